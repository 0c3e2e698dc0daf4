"""The reasoning example configs (issue 23 item 5) pass Axolotl's own schema and load their preset's rows.

As in tests/test_plugin.py's ``test_example_configs_validate``: the hub model is swapped for the local tiny one
and the 4-bit settings, which need a GPU, for their CPU equivalents; everything else is validated as shipped.
"""

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "presets"


@pytest.mark.parametrize("name, fixture, temperature", [
    ("mipo-reasoning-gsm8k.yml", "gsm8k_main.jsonl", 0.1),  # gsm.py lines 76-82
    ("mipo-reasoning-arc.yml", "arc.jsonl", 1.0),  # arc.py lines 33-39
])
def test_reasoning_example_configs_validate_and_load_their_rows(name, fixture, temperature, tmp_path,
                                                                tiny_model_dir, monkeypatch):
    from axolotl.cli.config import load_cfg
    from axolotl.integrations.base import PluginManager

    from axolotl_mipo.args import as_config
    from axolotl_mipo.data.example import GOLD_KEYS
    from axolotl_mipo.data.rows import load_examples

    shipped = yaml.safe_load((REPO / "example_configs" / name).read_text())
    cfg = dict(shipped, base_model=str(tiny_model_dir), output_dir=str(tmp_path / "out"),
               dataset_prepared_path=str(tmp_path / "prepared"), adapter="lora", optimizer="adamw_torch",
               bf16=False)
    cfg.pop("load_in_4bit")  # bitsandbytes 4-bit needs a GPU; validate the rest here
    cfg.pop("tf32", None)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    PluginManager.get_instance().plugins.clear()
    out = load_cfg(str(path))
    mipo = as_config(out.mipo)
    assert out.rl == "dpo" and out.num_epochs == 1 and out.rl_beta == 0.1
    assert (mipo.generation.temperature, mipo.generation.top_p) == (temperature, 0.9)
    assert mipo.strategy == "mismatched_prompt" and not mipo.datasets[0].has_context
    # the shipped dataset entry, its path pointed at rows of the published shape (few_shot_path as shipped,
    # relative to the repository root as the config's comments run it)
    monkeypatch.chdir(REPO)
    ds = mipo.datasets[0].model_copy(update={"path": str(FIX / fixture)})
    exs = load_examples([ds])
    assert exs and all(set(GOLD_KEYS) <= set(ex.meta) for ex in exs)
    if shipped["mipo"]["datasets"][0].get("few_shot_path"):
        assert exs[0].messages[0][1].count("Example ") == 8  # the authors' eight exemplars
