"""The pre-generation diagnostic: rows per rejected prompt, and the warning when pairs degenerate."""

import hashlib
import logging

import pytest

from axolotl_mipo.generation.base import GenerationResult
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.pairing import build_strategy
from axolotl_mipo.pipeline.builder import build_preference_rows
from axolotl_mipo.testing.fake_backend import FakeBackend


def _preset_backend():
    """A deterministic response per prompt ('resp <hash>', the summaries too); counts the prompts generated."""
    return FakeBackend(lambda p: GenerationResult("resp " + hashlib.sha1(p.encode()).hexdigest()[:10], 2),
                       name="preset-fake", max_new_tokens=64)


@pytest.fixture()
def tok(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


def test_degenerate_pairs_are_warned_with_the_remedy(tok, tmp_path, caplog):
    from axolotl_mipo.data.example import Example

    # 12 users, 2 queries: drop_context's rejected (context-free) prompt is shared by 6 rows each
    exs = [Example(index=i, messages=(("user", f"query {i % 2}"),), context=f"user {i} likes {i}", source="d")
           for i in range(12)]
    with caplog.at_level(logging.WARNING, logger="axolotl_mipo.pipeline.diagnostics"):
        _, stats = build_preference_rows(exs, build_strategy("drop_context", {}), _preset_backend(),
                                         GenerationCache(tmp_path / "a", {}), tok, progress=False)
    assert stats.sharing.distinct_rejected_prompts == 2 and stats.sharing.max_rows_per_prompt == 6
    assert stats.sharing.rows_sharing == 12
    [warning] = [r.getMessage() for r in caplog.records if "degenerate" in r.getMessage()]
    assert "swap_context" in warning and "nearest_context" in warning and "mixture" in warning
    # swap_context on the same two queries, 200 users: each row's rejected prompt carries another user's
    # context, so only chance collisions of two rows on one (query, partner context) remain
    many = [Example(index=i, messages=(("user", f"query {i % 2}"),), context=f"user {i}", source="d")
            for i in range(200)]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="axolotl_mipo.pipeline.diagnostics"):
        _, stats = build_preference_rows(many, build_strategy("swap_context", {}), _preset_backend(),
                                         GenerationCache(tmp_path / "b", {}), tok, progress=False)
    assert stats.sharing.max_rows_per_prompt < 5 and not stats.sharing.degenerate
    assert not [r for r in caplog.records if "degenerate" in r.getMessage()]
    # a popular query asked by a quarter of the users degenerates a quarter of the pairs: warned
    popular = [Example(index=i, messages=(("user", "popular" if i % 4 == 0 else f"query {i}"),),
                       context=f"user {i}", source="d") for i in range(40)]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="axolotl_mipo.pipeline.diagnostics"):
        _, stats = build_preference_rows(popular, build_strategy("drop_context", {}), _preset_backend(),
                                         GenerationCache(tmp_path / "p", {}), tok, progress=False)
    assert stats.sharing.rows_per_prompt < 1.5 and stats.sharing.crowded_fraction == 0.25
    assert [r for r in caplog.records if "degenerate" in r.getMessage()]
    # few users per query: every pair degenerate, even with no prompt shared by CROWD rows
    few = [Example(index=i, messages=(("user", f"query {i % 2}"),), context=f"user {i}", source="d")
           for i in range(8)]
    _, stats = build_preference_rows(few, build_strategy("drop_context", {}), _preset_backend(),
                                     GenerationCache(tmp_path / "f", {}), tok, progress=False)
    assert stats.sharing.crowded_fraction == 0 and stats.sharing.rows_per_prompt == 4 and stats.sharing.degenerate
    # distinct queries: drop_context is fine too
    distinct = [Example(index=i, messages=(("user", f"query {i}"),), context=f"user {i}", source="d")
                for i in range(12)]
    _, stats = build_preference_rows(distinct, build_strategy("drop_context", {}), _preset_backend(),
                                     GenerationCache(tmp_path / "c", {}), tok, progress=False)
    assert stats.sharing.rows_per_prompt == 1.0 and not stats.sharing.degenerate
