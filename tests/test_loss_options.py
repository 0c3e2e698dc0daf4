"""The loss options (axolotl_mipo/loss_options.py): the mipo: block maps onto the training-argument fields."""

import pytest

from axolotl_mipo.args import training_args_from_config
from axolotl_mipo.errors import MIPOConfigError


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


@pytest.mark.fast
def test_loss_options_agree_across_the_block_and_the_training_args():
    """Each loss option is declared once (MIPOTrainingArgsMixin); the mipo: block and the trainer's settings
    must say the same default and allowed values (docs/reference/config.md is generated from them:
    tests/test_docs.py)."""
    import dataclasses
    import typing

    from axolotl_mipo.args import LOSS_OPTIONS, MIPOConfig, MIPOLossSettings, MIPOTrainingArgsMixin

    mixin = {f.name: f for f in dataclasses.fields(MIPOTrainingArgsMixin)}
    block = {n: f for n, f in MIPOConfig.model_fields.items() if n in LOSS_OPTIONS}
    assert set(block) == {n[len("mipo_"):] for n in mixin} == set(LOSS_OPTIONS)
    assert [f.name for f in dataclasses.fields(MIPOLossSettings)] == list(LOSS_OPTIONS)
    defaults = MIPOLossSettings.from_args(None)
    for name, decl in LOSS_OPTIONS.items():
        assert mixin["mipo_" + name].default == block[name].default == getattr(defaults, name) == decl.default, name
        assert block[name].description == decl.metadata["help"]
        choices = decl.metadata.get("choices")
        if choices:
            assert typing.get_args(block[name].annotation) == choices
            with pytest.raises(MIPOConfigError, match=f"mipo.{name}"):
                training_args_from_config({name: "not-a-choice"})
    with pytest.raises(MIPOConfigError, match="rmipo_beta"):
        training_args_from_config({"rmipo_beta": 0.0})
    with pytest.raises(MIPOConfigError, match="perce_alpha"):
        training_args_from_config({"perce_alpha": -1.0})


def test_the_loss_order_rule_is_one_rule_for_the_block_and_the_training_args():
    from axolotl_mipo.args import validate_mipo_block

    ds = [{"path": "x.jsonl"}]
    for lo, hi in (("rmipo_gamma_min", "rmipo_gamma_max"), ("perce_clip_min", "perce_clip_max")):
        expected = rf"mipo\.{lo}: 9 must be <= mipo\.{hi} \(\d"
        with pytest.raises(MIPOConfigError, match=expected):
            validate_mipo_block({"datasets": ds, lo: 9.0})
        with pytest.raises(MIPOConfigError, match=expected):
            training_args_from_config({lo: 9.0})
        validate_mipo_block({"datasets": ds, lo: 1.0, hi: 1.0})  # equal is allowed
