"""End to end through the real Axolotl CLI: `axolotl preprocess` generates, `axolotl train` reuses and trains."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def _run(args, cwd, timeout=600):
    env = dict(os.environ)
    # `axolotl train` re-launches itself through `accelerate`, which must be on PATH
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "axolotl"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    return log


def _config(tmp_path, tiny_model_dir, **mipo):
    cfg = yaml.safe_load((REPO / "example_configs" / "mipo-tiny-cpu.yml").read_text())
    cfg["base_model"] = str(tiny_model_dir)
    cfg["output_dir"] = str(tmp_path / "out")
    cfg["dataset_prepared_path"] = str(tmp_path / "prepared")
    cfg["mipo"]["datasets"][0]["path"] = str(REPO / "example_configs" / "data" / "personas.jsonl")
    cfg["mipo"]["generation"]["max_new_tokens"] = 12
    cfg["mipo"].update(mipo)
    cfg["max_steps"] = 2
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_preprocess_generates_then_train_reuses_and_writes_an_adapter(tmp_path, tiny_model_dir):
    path = _config(tmp_path, tiny_model_dir)
    pre = _run(["preprocess", str(path)], cwd=tmp_path)
    assert "mipo: generating" in pre and "40 generated" in pre, pre[-3000:]
    log = _run(["train", str(path)], cwd=tmp_path)
    assert "reusing 40 cached generations" in log and "0 generated" in log
    assert "32 kept" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
    assert "'loss'" in log or '"loss"' in log


def test_swap_context_strategy_trains(tmp_path, tiny_model_dir):
    path = _config(tmp_path, tiny_model_dir, strategy="swap_context")
    log = _run(["train", str(path)], cwd=tmp_path)
    assert "pairing strategy 'swap_context'" in log
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("loss, extra, metrics", [
    ("rmipo+perce", {}, ["rmipo/gamma", "rmipo/dpmi", "perce/weight_mean", "perce/clipped_frac", "perce/aux_loss"]),
    # the options computed once with the reference: PerCE weights and RMiPO's per-pair PMI
    ("rmipo+perce", {"perce_weights_from": "reference", "rmipo_pmi_from": "reference", "rmipo_form": "dpo"},
     ["rmipo/gamma", "rmipo/dpmi", "perce/weight_mean", "perce/clipped_frac"]),
])
def test_loss_hooks_through_axolotl_train(tmp_path, tiny_model_dir, loss, extra, metrics):
    path = _config(tmp_path, tiny_model_dir, loss=loss, **extra)
    if extra.get("perce_weights_from") == "reference":
        cfg = yaml.safe_load(path.read_text())
        cfg["precompute_ref_log_probs"] = True
        path.write_text(yaml.safe_dump(cfg))
    log = _run(["train", str(path)], cwd=tmp_path)
    for m in metrics:
        assert f"'{m}'" in log, f"{m} missing from the training log"
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
