"""Pairing strategies as an ecosystem: entry points, the example package, nearest_context, mixtures.

The session fixture installs ``examples/mipo-strategy-example`` (editable) into
this environment, so that its strategy is found through its entry point exactly
as a user's third-party package would be.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axolotl_mipo.errors import MIPOConfigError, MIPOError, MIPOStrategyError
from axolotl_mipo.pairing import (
    GenRequest,
    Mixture,
    available_strategies,
    build_strategy,
    get_strategy,
)
from axolotl_mipo.testing.pairing_checks import check_strategy_invariants, examples_strategy, fake_responses
from axolotl_mipo.testing.pairing_rows import FACTORIES, grouped_rows

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mipo-strategy-example"
TEMPLATE = REPO / "examples" / "strategy-template"
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


# -- the example package, installed ----------------------------------------------------------------


def test_example_strategy_resolves_through_its_entry_point(example_package):
    assert "shuffled_query" in available_strategies()
    strategy = get_strategy("shuffled_query")
    assert type(strategy) is example_package.ShuffledQuery
    assert strategy.name == "shuffled_query"
    # and inside a mixture, by the same name
    mix = build_strategy([{"name": "drop_context", "weight": 1}, {"name": "shuffled_query", "weight": 1}])
    assert [s.name for s in mix.strategies] == ["drop_context", "shuffled_query"]


def test_template_strategy_resolves_by_module_object_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TEMPLATE / "src"))
    monkeypatch.delitem(sys.modules, "mipo_strategy_template", raising=False)
    strategy = get_strategy("mipo_strategy_template:MyStrategy")
    pairs = check_strategy_invariants(strategy, grouped_rows(6), 0)
    assert len(pairs) == 6


# -- invariants of every built-in (and the example) -------------------------------------------------



def _context_mode(name: str) -> str:
    return "never" if name == "mismatched_prompt" else "sometimes"


@pytest.mark.parametrize("name", sorted(FACTORIES))
@SETTINGS
@given(data=st.data(), seed=seeds)
def test_builtin_invariants_no_self_pairing_and_determinism(name, data, seed):
    examples = data.draw(examples_strategy(context=_context_mode(name)))
    strategy = FACTORIES[name]()
    try:
        strategy.validate(examples)
    except MIPOError:
        return  # a documented refusal; the refusals are tested below
    if isinstance(strategy, Mixture):
        try:
            strategy.requests(examples, seed)
        except MIPOStrategyError as e:
            assert "mixture component" in str(e)  # a component's subset is too small to pair
            return
    pairs = check_strategy_invariants(strategy, examples, seed)
    assert sorted(p.row for p in pairs) == list(range(len(examples)))
    for p in pairs:
        assert p.chosen != p.rejected
        if "partner_row" in p.meta:
            assert p.meta["partner_row"] != p.row, "a row was paired with itself"
            assert p.meta["partner_index"] == examples[p.meta["partner_row"]].index
        which = p.meta.get("strategy", strategy.name)
        if which in ("swap_context", "nearest_context"):
            # never the row's own context text, and the partner row really holds the rejected's context
            assert p.rejected.context != p.prompt_context == examples[p.row].context
            assert examples[p.meta["partner_row"]].context == p.rejected.context
        elif which == "drop_context":
            assert p.rejected == GenRequest(p.row, None) and p.chosen.context == examples[p.row].context
        elif which == "mismatched_prompt":
            assert examples[p.rejected.row].messages != examples[p.row].messages
    # a fresh instance (not a copy) gives the same pairs: nothing depends on hidden state
    again = FACTORIES[name]()
    responses = fake_responses(again.requests(examples, seed), examples)
    assert again.pair(examples, responses, seed) == pairs


@SETTINGS
@given(examples=examples_strategy(context="always", max_contexts=4), seed=seeds)
def test_example_strategy_invariants(example_package, examples, seed):
    strategy = get_strategy("shuffled_query")
    try:
        strategy.validate(examples)
    except MIPOError:
        return
    for p in check_strategy_invariants(strategy, examples, seed):
        assert p.meta["partner_row"] != p.row
        assert examples[p.rejected.row].messages != examples[p.row].messages


def test_config_accepts_a_weighted_list_and_checks_every_name():
    from axolotl_mipo.args import validate_mipo_block

    ds = [{"path": "x.jsonl"}]
    cfg = validate_mipo_block({"datasets": ds, "strategy": [
        {"name": "drop_context", "weight": 0.7}, {"name": "nearest_context", "weight": 0.3, "kwargs": {"top_k": 2}}]})
    assert cfg.strategy_names == ["drop_context", "nearest_context"]
    mix = build_strategy(cfg.strategy, cfg.strategy_kwargs)
    assert isinstance(mix, Mixture) and mix.weights == pytest.approx([0.7, 0.3])
    assert mix.strategies[1].top_k == 2
    with pytest.raises(MIPOConfigError, match="mismatched_prompt is the reasoning variant"):
        validate_mipo_block({"datasets": ds, "strategy": [{"name": "drop_context"}, {"name": "mismatched_prompt"}]})
    with pytest.raises(MIPOConfigError, match="nearest_context needs a user context"):
        validate_mipo_block({"datasets": [{"path": "x", "format": "prompt"}],
                             "strategy": [{"name": "mismatched_prompt"}, {"name": "nearest_context"}]})
    with pytest.raises(MIPOConfigError, match=r"strategy\[0\]\.wieght: unknown option; did you mean 'weight'"):
        validate_mipo_block({"datasets": ds, "strategy": [{"name": "drop_context", "wieght": 1}]})
    with pytest.raises(MIPOConfigError, match="strategy_kwargs cannot be used with a list"):
        validate_mipo_block({"datasets": ds, "strategy": [{"name": "drop_context"}], "strategy_kwargs": {"a": 1}})


def test_weighted_list_survives_axolotls_config_loading(tmp_path, tiny_model_dir):
    from axolotl.cli.config import load_cfg
    from axolotl.integrations.base import PluginManager

    from axolotl_mipo.args import as_config

    cfg = yaml.safe_load((REPO / "example_configs" / "mipo-tiny-cpu.yml").read_text())
    cfg.update(base_model=str(tiny_model_dir), output_dir=str(tmp_path / "out"))
    cfg["mipo"]["strategy"] = [{"name": "drop_context", "weight": 0.7},
                               {"name": "nearest_context", "weight": 0.3, "kwargs": {"embedder": "tfidf"}}]
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    PluginManager.get_instance().plugins.clear()
    loaded = load_cfg(str(path))
    mipo = as_config(loaded.mipo)
    assert mipo.strategy_names == ["drop_context", "nearest_context"]
    assert mipo.strategy[1].kwargs == {"embedder": "tfidf"}


# -- end to end: the example package's strategy, by name, from a YAML -------------------------------

@pytest.mark.e2e
def test_example_package_strategy_trains_by_its_entry_point_name(example_package, tmp_path, tiny_mipo_config,
                                                                 axolotl_cli):
    path = tiny_mipo_config(strategy="shuffled_query")
    log = axolotl_cli(["train", str(path)], cwd=tmp_path)
    assert "pairing strategy 'shuffled_query'" in log, log[-3000:]
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
