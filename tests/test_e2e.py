"""End to end through the real Axolotl CLI: `axolotl preprocess` generates, `axolotl train` reuses and trains."""

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e


def test_preprocess_generates_then_train_reuses_and_writes_an_adapter(tmp_path, tiny_mipo_config, axolotl_cli):
    path = tiny_mipo_config()
    pre = axolotl_cli(["preprocess", str(path)], cwd=tmp_path)
    assert "mipo: generating" in pre and "40 generated" in pre, pre[-3000:]
    assert "mipo: loading" in pre  # the generation model's load line
    log = axolotl_cli(["train", str(path)], cwd=tmp_path)
    assert "reusing 40 cached generations" in log and "0 generated" in log
    assert "mipo: loading" not in log, "every response was cached: the generation model must not be loaded"
    assert "32 kept" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
    assert "'loss'" in log or '"loss"' in log


def test_swap_context_strategy_trains(tmp_path, tiny_mipo_config, axolotl_cli):
    path = tiny_mipo_config(strategy="swap_context")
    log = axolotl_cli(["train", str(path)], cwd=tmp_path)
    assert "pairing strategy 'swap_context'" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("loss, extra, metrics", [
    ("rmipo+perce", {}, ["rmipo/gamma", "rmipo/dpmi", "perce/weight_mean", "perce/clipped_frac", "perce/aux_loss"]),
    # the options computed once with the reference: PerCE weights and RMiPO's per-pair PMI
    ("rmipo+perce", {"perce_weights_from": "reference", "rmipo_pmi_from": "reference", "rmipo_form": "dpo"},
     ["rmipo/gamma", "rmipo/dpmi", "perce/weight_mean", "perce/clipped_frac"]),
])
def test_loss_hooks_through_axolotl_train(tmp_path, tiny_mipo_config, axolotl_cli, loss, extra, metrics):
    path = tiny_mipo_config(loss=loss, **extra)
    if extra.get("perce_weights_from") == "reference":
        cfg = yaml.safe_load(path.read_text())
        cfg["precompute_ref_log_probs"] = True
        path.write_text(yaml.safe_dump(cfg))
    log = axolotl_cli(["train", str(path)], cwd=tmp_path)
    for m in metrics:
        assert f"'{m}'" in log, f"{m} missing from the training log"
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_preference_summary_through_axolotl_train(tmp_path, tiny_mipo_config, axolotl_cli):
    """POPI: contexts summarized by the model, cached, used by the pairing strategy; the report is written."""
    import json

    path = tiny_mipo_config(context_builder="preference_summary", summary={"max_new_tokens": 8, "report_rows": 4})
    log = axolotl_cli(["train", str(path)], cwd=tmp_path)
    assert "preference_summary: summarizing 8 distinct contexts" in log, log[-3000:]
    assert "history/summary length" in log and "per-token MI of responses on 4 rows" in log
    reports = list((tmp_path / "prepared" / "mipo_cache").glob("*/preference_summary_report.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["contexts"] == 8 and report["mi_rows"] == 4 and report["summary_tokens_mean"] > 0
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_dataset_preset_with_human_pair_columns_trains(tmp_path, tiny_mipo_config, axolotl_cli):
    # the DPO rows carry mipo_human_chosen / mipo_human_rejected; the collator must drop them
    fixture = Path(__file__).parent / "fixtures" / "presets" / "community_alignment.csv"
    path = tiny_mipo_config(datasets=[{"path": str(fixture), "format": "community_alignment", "max_items": 2}],
                            loss="rmipo+perce")
    log = axolotl_cli(["train", str(path)], cwd=tmp_path)
    assert "mipo: read 4 rows, kept 4" in log and "4 kept" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_popi_summarizer_trains_with_axolotls_grpo_on_the_cpu(tmp_path, tiny_model_dir, axolotl_cli):
    # rl: grpo, no vLLM: TRL samples the summaries with the training model, POPI's reward scores them
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "example_configs" /
                          "popi-summarizer-tiny-cpu.yml").read_text())
    cfg["base_model"] = str(tiny_model_dir)
    cfg["output_dir"] = str(tmp_path / "out")
    cfg["dataset_prepared_path"] = str(tmp_path / "prepared")
    cfg["popi"]["datasets"][0]["path"] = str(Path(__file__).parent / "fixtures" / "presets" / "community_alignment.csv")
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    log = axolotl_cli(["train", str(path)], cwd=tmp_path)
    assert "popi: 3 summarizer prompts from 4 rows (2 users)" in log
    assert "skipped: 1 without a held-out human pair" in log
    assert "loading the frozen generator" in log and "'rewards/popi_reward/mean'" in log
    assert "'popi/dpo_reward'" in log and "'popi/length_penalty'" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_mipo_block_alone_enables_the_installed_plugin(tmp_path, tiny_mipo_config, axolotl_cli):
    """Axolotl >= 0.21 loads the installed package's ``axolotl.plugins`` entry point: no ``plugins:`` needed."""
    from importlib.metadata import entry_points

    import axolotl.integrations.base as base

    if not hasattr(base, "PLUGIN_ENTRY_POINT_GROUP"):
        pytest.skip("this Axolotl has no plugin entry-point group (added in 0.21): list the plugin in plugins:")
    points = [p.value for p in entry_points(group=base.PLUGIN_ENTRY_POINT_GROUP)]
    assert "axolotl_mipo:MIPOPlugin" in points, f"axolotl-mipo is not installed with its entry point: {points}"
    path = tiny_mipo_config()
    cfg = yaml.safe_load(path.read_text())
    del cfg["plugins"]
    path.write_text(yaml.safe_dump(cfg))
    log = axolotl_cli(["preprocess", str(path)], cwd=tmp_path)
    assert "mipo: generating" in log and "40 generated" in log, log[-3000:]
    assert "Plugin loaded successfully: axolotl_mipo.MIPOPlugin" in log
