"""Mixture: weighted lists of strategies, seeded and recorded per row."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPOStrategyError
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.pairing import (
    Mixture,
    build_strategy,
)
from axolotl_mipo.pipeline.builder import build_preference_rows
from axolotl_mipo.testing.fake_backend import FakeBackend
from axolotl_mipo.testing.pairing_checks import check_strategy_invariants


def _rows(n: int, *, contexts: int = 3, queries: int | None = None) -> list[Example]:
    queries = queries or n
    return [Example(index=10 + 2 * i, messages=(("user", f"question {i % queries}"),),
                    context=f"user {i % contexts} likes topic {i % contexts} and short answers", source="d")
            for i in range(n)]


@pytest.fixture()
def tok(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


def test_mixture_weights_are_respected_seeded_and_recorded(tok, tmp_path):
    mix = build_strategy([{"name": "drop_context", "weight": 0.7},
                          {"name": "nearest_context", "weight": 0.3, "kwargs": {"embedder": "tfidf"}}])
    labels = mix.assign(1000, 7)
    assert np.bincount(labels).tolist() == [700, 300]
    assert np.array_equal(labels, mix.assign(1000, 7)) and not np.array_equal(labels, mix.assign(1000, 8))
    assert np.bincount(mix.assign(11, 0)).tolist() == [8, 3]  # largest remainder: 7.7 -> 8, 3.3 -> 3

    rows = _rows(40, contexts=8)
    out, _ = build_preference_rows(rows, mix, FakeBackend(name="recording"), GenerationCache(tmp_path, {}), tok,
                                   progress=False)
    by_name = collections.Counter(r["mipo_strategy"] for r in out)
    assert by_name == {"drop_context": 28, "nearest_context": 12}
    for r in out:
        meta = json.loads(r["mipo_meta"])
        assert meta["strategy"] == r["mipo_strategy"]
        if r["mipo_strategy"] == "nearest_context":
            # partner rows are translated back to positions in the whole data
            partner = rows[meta["partner_row"]]
            assert partner.index == meta["partner_index"]
            assert partner.context != rows[r["mipo_row"] // 2 - 5].context
            assert mix.assign(40, 42)[meta["partner_row"]] == 1, "the partner comes from the component's subset"


def test_mixture_partner_rows_are_global_positions():
    rows = _rows(30, contexts=6)
    mix = build_strategy([{"name": "swap_context", "weight": 1}, {"name": "drop_context", "weight": 1}])
    pairs = check_strategy_invariants(mix, rows, 3)
    labels = mix.assign(len(rows), 3)
    for p in pairs:
        assert p.meta["strategy"] == ("swap_context" if labels[p.row] == 0 else "drop_context")
        if p.meta["strategy"] == "swap_context":
            j = p.meta["partner_row"]
            assert labels[j] == 0 and rows[j].context == p.rejected.context != rows[p.row].context


def test_mixture_refusals():
    with pytest.raises(MIPOStrategyError, match="weight must be a number > 0"):
        build_strategy([{"name": "drop_context", "weight": 0}])
    with pytest.raises(MIPOStrategyError, match="unknown pairing strategy"):
        build_strategy([{"name": "drop_contxt"}])
    with pytest.raises(MIPOStrategyError, match="strategy_kwargs cannot be used with a list"):
        build_strategy([{"name": "drop_context"}], {"x": 1})
    with pytest.raises(MIPOStrategyError, match="at least one component"):
        Mixture([])
