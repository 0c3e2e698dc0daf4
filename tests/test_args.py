"""The loss options: the mipo: block maps onto the training-argument fields."""

from pathlib import Path

import pytest

from axolotl_mipo.errors import MIPOConfigError

REPO = Path(__file__).resolve().parents[1]


def test_training_args_from_config():
    from axolotl.utils.dict import DictDefault

    from axolotl_mipo.args import (
        MIPOConfig,
        MIPOTrainingArgsMixin,
        training_args_from_config,
    )

    cfg = MIPOConfig(datasets=[{"path": "x.jsonl"}], loss="rmipo+perce", rmipo_form="dpo", perce_clip_max=2.0)
    out = training_args_from_config(cfg)
    field_names = set(MIPOTrainingArgsMixin.__dataclass_fields__)
    assert set(out) == field_names
    # every loss option of the mipo: block has its training-args field, and no other
    loss_opts = {n for n in MIPOConfig.model_fields if n == "loss" or n.startswith(("rmipo_", "perce_"))}
    assert {"mipo_" + n for n in loss_opts} == field_names
    assert out["mipo_loss"] == "rmipo+perce" and out["mipo_rmipo_form"] == "dpo"
    assert out["mipo_perce_clip_max"] == 2.0 and out["mipo_rmipo_beta"] == 2.0
    assert training_args_from_config(cfg.model_dump()) == out
    assert training_args_from_config(DictDefault(cfg.model_dump())) == out
    assert training_args_from_config(DictDefault({"loss": "perce"}))["mipo_perce_weights_from"] == "policy"
    assert training_args_from_config(None)["mipo_loss"] == "dpo"
    with pytest.raises(MIPOConfigError, match="mipo.loss"):
        training_args_from_config({"loss": "simpo"})
    with pytest.raises(MIPOConfigError, match="mipo.rmipo_pmi_from"):
        training_args_from_config({"rmipo_pmi_from": "oracle"})
    with pytest.raises(MIPOConfigError, match="perce_clip_min"):
        training_args_from_config({"perce_clip_min": 3.0, "perce_clip_max": 2.0})
