"""Pairing strategies, the constrained derangement and the strategy registry."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPODataError, MIPOError, MIPOStrategyError
from axolotl_mipo.pairing import (
    GenRequest,
    Pair,
    PairingStrategy,
    available_strategies,
    constrained_derangement,
    get_strategy,
    register_strategy,
)
from axolotl_mipo.pairing import registry
from axolotl_mipo.pairing.strategies import DropContext, MismatchedPrompt, SwapContext
from axolotl_mipo.testing.pairing_checks import (
    check_strategy_invariants,
    examples_strategy,
    fake_responses,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


def rows(n: int, *, contexts=None, queries=None) -> list[Example]:
    contexts = contexts if contexts is not None else [f"user {i % 7}" for i in range(n)]
    queries = queries if queries is not None else [f"query {i}" for i in range(n)]
    return [Example(index=100 + i, messages=(("user", queries[i]),), context=contexts[i], source="t")
            for i in range(n)]


def has_valid_permutation(keys: list[np.ndarray], n: int) -> bool:
    """Exact feasibility: a perfect matching of rows to allowed partners (Kuhn's augmenting paths)."""
    allowed = [[j for j in range(n) if j != i and all(k[i] != k[j] for k in keys)] for i in range(n)]
    match_of: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for j in allowed[i]:
            if j not in seen:
                seen.add(j)
                if j not in match_of or augment(match_of[j], seen):
                    match_of[j] = i
                    return True
        return False

    return all(augment(i, set()) for i in range(n))


def assert_valid_derangement(sigma: np.ndarray, keys: list[np.ndarray], n: int) -> None:
    assert sigma.shape == (n,)
    assert sorted(sigma.tolist()) == list(range(n)), "not a permutation"
    assert (sigma != np.arange(n)).all(), "fixed point"
    for k in keys:
        assert (k[sigma] != k).all(), "paired two rows with the same key"


# -- constrained_derangement -----------------------------------------------------------------------

@SETTINGS
@given(st.integers(2, 60).flatmap(lambda n: st.lists(st.integers(0, 5), min_size=n, max_size=n)), seeds)
def test_derangement_single_key_exists_iff_no_key_covers_more_than_half(keys, seed):
    k = np.array(keys)
    n = k.size
    top = np.bincount(k).max()
    if top > n - top:
        with pytest.raises(MIPOStrategyError, match="more than half"):
            constrained_derangement([k], seed)
    else:
        assert_valid_derangement(constrained_derangement([k], seed), [k], n)


@SETTINGS
@given(st.integers(2, 24).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 3), min_size=n, max_size=n),
    st.lists(st.integers(0, 4), min_size=n, max_size=n))), seeds)
def test_derangement_two_keys_found_whenever_one_exists(key_lists, seed):
    keys = [np.array(k) for k in key_lists]
    n = keys[0].size
    if has_valid_permutation(keys, n):
        assert_valid_derangement(constrained_derangement(keys, seed), keys, n)
    else:
        with pytest.raises(MIPOStrategyError):
            constrained_derangement(keys, seed)


def test_derangement_accepts_strings_and_no_keys():
    sigma = constrained_derangement([["a", "b", "a", "b"]], 3)
    assert_valid_derangement(sigma, [np.array([0, 1, 0, 1])], 4)
    assert_valid_derangement(constrained_derangement([], 0, n=5), [], 5)
    # tuples (e.g. Example.messages) are keys, not rows of a 2-D array
    msgs = [(("user", "a"),), (("user", "b"),), (("user", "a"),), (("user", "c"),)]
    assert_valid_derangement(constrained_derangement([msgs], 1), [np.array([0, 1, 0, 2])], 4)
    with pytest.raises(MIPOStrategyError, match="at least 2 rows"):
        constrained_derangement([[7]], 0)


def test_derangement_is_seeded():
    keys = [np.arange(1000) % 10]
    a, b = constrained_derangement(keys, 1), constrained_derangement(keys, 1)
    assert (a == b).all()
    assert (a != constrained_derangement(keys, 2)).any()


def test_derangement_at_the_half_way_limit():
    # one prompt covers exactly half of the rows: only cross-group pairings are valid
    n = 10_000
    k = np.r_[np.zeros(n // 2, dtype=np.int64), np.arange(1, n // 2 + 1)]
    sigma = constrained_derangement([k, np.arange(n) % 3], 5)
    assert_valid_derangement(sigma, [k, np.arange(n) % 3], n)
    # and it is not forced into mutual swaps
    assert (sigma[sigma] == np.arange(n)).mean() < 0.05


def test_derangement_200k_rows_completes():
    rng = np.random.default_rng(0)
    n = 200_000
    keys = [rng.integers(0, 50, n), rng.integers(0, 5000, n)]
    assert_valid_derangement(constrained_derangement(keys, 0), keys, n)


# -- the built-in strategies -----------------------------------------------------------------------

def validated(strategy: PairingStrategy, examples) -> bool:
    try:
        strategy.validate(examples)
    except MIPOError:
        return False
    return True


@SETTINGS
@given(examples_strategy(), seeds)
def test_drop_context(examples, seed):
    pairs = check_strategy_invariants(DropContext(), examples, seed)
    assert [p.row for p in pairs] == list(range(len(examples)))
    for p, ex in zip(pairs, examples):
        assert p.chosen == GenRequest(p.row, ex.context)
        assert p.rejected == GenRequest(p.row, None)
        assert p.prompt_context == ex.context


@SETTINGS
@given(examples_strategy(max_contexts=3), seeds)
def test_swap_context_never_reuses_the_rows_own_context_text(examples, seed):
    strategy = SwapContext()
    assume(validated(strategy, examples))
    pairs = check_strategy_invariants(strategy, examples, seed)
    assert [p.row for p in pairs] == list(range(len(examples)))
    for p, ex in zip(pairs, examples):
        partner = examples[p.meta["partner_row"]]
        assert p.chosen == GenRequest(p.row, ex.context)
        assert p.rejected == GenRequest(p.row, partner.context)
        assert p.rejected.context != ex.context
        assert p.prompt_context == ex.context
        assert p.meta["partner_index"] == partner.index


def collide(req: GenRequest, examples) -> str:
    """Responses that repeat: the same text for every row with the same first letter of the query."""
    return "answer " + examples[req.row].messages[-1][1].strip()[0]


@SETTINGS
@given(examples_strategy(min_size=2, context="sometimes", max_prompts=8), seeds, st.booleans())
def test_mismatched_prompt_is_a_derangement_avoiding_equal_prompts_and_responses(examples, seed, repeat):
    strategy = MismatchedPrompt()
    assume(validated(strategy, examples))
    respond = collide if repeat else None
    try:
        pairs = check_strategy_invariants(strategy, examples, seed, respond=respond)
    except MIPOStrategyError:
        assert repeat  # only repeated responses can make a valid pairing impossible after validate()
        return
    responses = fake_responses(strategy.requests(examples, seed), examples, respond)
    assert [p.row for p in pairs] == list(range(len(examples)))
    partners = [p.meta["partner_row"] for p in pairs]
    assert sorted(partners) == list(range(len(examples)))
    for p, ex in zip(pairs, examples):
        j = p.meta["partner_row"]
        assert j != p.row
        assert p.chosen == GenRequest(p.row, None) and p.rejected == GenRequest(j, None)
        assert p.prompt_context is None
        assert examples[j].query_key != ex.query_key
        assert responses[p.rejected].strip() != responses[p.chosen].strip()
        assert p.meta["partner_index"] == examples[j].index


@pytest.mark.parametrize("strategy", [SwapContext(), MismatchedPrompt()], ids=lambda s: s.name)
def test_same_seed_same_pairs_other_seed_other_pairs(strategy):
    examples = rows(500)
    responses = fake_responses(strategy.requests(examples, 0), examples)
    a = strategy.pair(examples, responses, 0)
    assert strategy.pair(examples, responses, 0) == a
    other_responses = fake_responses(strategy.requests(examples, 1), examples)
    b = strategy.pair(examples, other_responses, 1)
    assert [p.meta["partner_row"] for p in a] != [p.meta["partner_row"] for p in b]


def test_swap_context_requests_and_pair_agree_on_partners():
    examples = rows(200)
    s = SwapContext()
    reqs = s.requests(examples, 9)
    pairs = s.pair(examples, fake_responses(reqs, examples), 9)
    assert [r for p in pairs for r in (p.chosen, p.rejected)] == reqs


# -- validation errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["drop_context", "swap_context", "mismatched_prompt"])
def test_zero_rows(name):
    with pytest.raises(MIPOStrategyError, match="zero rows"):
        get_strategy(name).validate([])


@pytest.mark.parametrize("name", ["drop_context", "swap_context"])
@pytest.mark.parametrize("missing", [None, "", "   "])
def test_missing_context_names_row_and_field(name, missing):
    examples = rows(4)
    examples[2] = Example(index=102, messages=(("user", "q"),), context=missing, source="users.jsonl")
    with pytest.raises(MIPODataError) as e:
        get_strategy(name).validate(examples)
    assert e.value.row == 102 and e.value.field == "context"
    assert "row 102" in str(e.value) and "'context'" in str(e.value) and "mismatched_prompt" in str(e.value)
    # pair() called without validate() refuses the same way
    with pytest.raises(MIPODataError, match="row 102"):
        get_strategy(name).requests(examples, 0)


def test_swap_context_needs_two_distinct_contexts():
    with pytest.raises(MIPOStrategyError, match="at least 2 distinct user contexts.*drop_context"):
        SwapContext().validate(rows(5, contexts=["same"] * 5))


def test_mismatched_prompt_needs_two_distinct_prompts():
    with pytest.raises(MIPOStrategyError, match="at least 2 distinct prompts"):
        MismatchedPrompt().validate(rows(5, queries=["same"] * 5))


def test_mismatched_prompt_names_the_dominant_prompt():
    examples = rows(5, queries=["what is 2+2", "b", "what is 2+2", "what is 2+2", "c"])
    with pytest.raises(MIPOStrategyError) as e:
        MismatchedPrompt().validate(examples)
    msg = str(e.value)
    assert "row 100" in msg and "what is 2+2" in msg and "3 of 5" in msg and "deduplicate" in msg


def test_mismatched_prompt_names_the_dominant_response():
    examples = rows(6)
    s = MismatchedPrompt()
    responses = fake_responses(s.requests(examples, 0), examples,
                               lambda r, ex: "42" if r.row < 4 else f"other {r.row}")
    with pytest.raises(MIPOStrategyError) as e:
        s.pair(examples, responses, 0)
    msg = str(e.value)
    assert "row 100" in msg and "'42'" in msg and "4 of 6" in msg and "temperature" in msg


@pytest.mark.parametrize("strategy", [DropContext(), SwapContext(), MismatchedPrompt()], ids=lambda s: s.name)
def test_missing_response_names_row_and_field(strategy):
    examples = rows(6)
    responses = fake_responses(strategy.requests(examples, 0), examples)
    del responses[next(r for r in responses if r.row == 3)]
    with pytest.raises(MIPODataError) as e:
        strategy.pair(examples, responses, 0)
    assert e.value.row == 103 and e.value.field == "response"


# -- registry ---------------------------------------------------------------------------------------

@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: [])


class _Echo(PairingStrategy):
    """A minimal valid strategy for the registry tests."""

    name = "echo_test"
    needs_context = False
    generations_per_row = 2

    def __init__(self, flip: bool = False):
        self.flip = flip

    def requests(self, examples, seed):
        return [r for i in range(len(examples)) for r in (GenRequest(i, None), GenRequest(i, "x"))]

    def pair(self, examples, responses, seed):
        return [Pair(i, None, GenRequest(i, None), GenRequest(i, "x")) for i in range(len(examples))]


class _FakeEntryPoint:
    def __init__(self, name, obj, group=registry.ENTRY_POINT_GROUP):
        self.name, self.group, self.value, self._obj, self.loaded = name, group, f"fake:{name}", obj, False

    def load(self):
        if isinstance(self._obj, Exception):
            raise self._obj
        self.loaded = True
        return self._obj


def test_builtins_are_available(clean_registry):
    assert {"drop_context", "swap_context", "mismatched_prompt"} <= set(available_strategies())
    assert isinstance(get_strategy("drop_context"), DropContext)
    assert isinstance(get_strategy(" mismatched_prompt "), MismatchedPrompt)


def test_unknown_name_lists_available_and_imports_nothing(clean_registry, monkeypatch):
    def no_import(*a, **kw):
        raise AssertionError("a bare unknown name must not import anything")

    monkeypatch.setattr(importlib, "import_module", no_import)
    with pytest.raises(MIPOStrategyError) as e:
        get_strategy("some_package.Strategy")
    msg = str(e.value)
    assert "unknown pairing strategy 'some_package.Strategy'" in msg
    assert "drop_context" in msg and "swap_context" in msg and "mismatched_prompt" in msg
    assert "'some_package:Strategy'" in msg
    with pytest.raises(MIPOStrategyError, match="did you mean 'drop_context'"):
        get_strategy("drop_contxt")


def test_register_refuses_duplicates_and_bad_classes(clean_registry):
    register_strategy(_Echo)
    register_strategy(_Echo)  # the same class again is harmless (e.g. a re-imported module)

    class Other(_Echo):
        name = "echo_test"

    with pytest.raises(MIPOStrategyError, match="already taken"):
        register_strategy(Other)

    class Nameless(_Echo):
        name = ""

    class Colon(_Echo):
        name = "a:b"

    for cls in (Nameless, Colon):
        with pytest.raises(MIPOStrategyError, match="name"):
            register_strategy(cls)
    with pytest.raises(MIPOStrategyError, match="not a PairingStrategy subclass"):
        register_strategy(dict)
    with pytest.raises(MIPOStrategyError, match="abstract"):
        register_strategy(PairingStrategy)
    assert get_strategy("echo_test", flip=True).flip is True
    with pytest.raises(MIPOStrategyError, match="does not accept the options.*'flop'.*accepts flip"):
        get_strategy("echo_test", flop=True)


def test_entry_point_is_loaded_only_when_its_name_matches(clean_registry, monkeypatch):
    wanted = _FakeEntryPoint("echo_ep", _Echo)
    broken = _FakeEntryPoint("other_ep", RuntimeError("must not be loaded"))
    foreign = _FakeEntryPoint("echo_ep", RuntimeError("other group"), group="something.else")
    calls = []

    def entry_points(**kw):
        calls.append(kw)
        return [broken, wanted, foreign]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert "echo_ep" in available_strategies() and "other_ep" in available_strategies()
    assert not wanted.loaded
    strategy = get_strategy("echo_ep", flip=True)
    assert isinstance(strategy, _Echo) and strategy.flip and wanted.loaded
    assert all(kw == {"group": "axolotl_mipo.pairing"} for kw in calls)
    # built-in names win without touching entry points' code
    assert isinstance(get_strategy("drop_context"), DropContext)
    with pytest.raises(MIPOStrategyError, match="could not load entry point 'other_ep'"):
        get_strategy("other_ep")


def test_entry_point_must_be_a_strategy_class(clean_registry, monkeypatch):
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [_FakeEntryPoint("bad_ep", lambda: None)])
    with pytest.raises(MIPOStrategyError, match="entry point 'bad_ep'.*not a PairingStrategy subclass"):
        get_strategy("bad_ep")


def test_module_object_path(clean_registry, tmp_path, monkeypatch):
    (tmp_path / "mipo_ext_strategy.py").write_text(textwrap.dedent("""
        from axolotl_mipo.pairing import GenRequest, Pair, PairingStrategy

        class Outer:
            class Inner(PairingStrategy):
                needs_context = False

                def requests(self, examples, seed):
                    return [GenRequest(i, c) for i in range(len(examples)) for c in (None, "c")]

                def pair(self, examples, responses, seed):
                    return [Pair(i, None, GenRequest(i, "c"), GenRequest(i, None)) for i in range(len(examples))]

        NOT_A_CLASS = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mipo_ext_strategy", raising=False)
    strategy = get_strategy("mipo_ext_strategy:Outer.Inner")
    assert type(strategy).__qualname__ == "Outer.Inner"
    assert strategy.name == "mipo_ext_strategy:Outer.Inner"  # an unnamed class records the path it came from
    check_strategy_invariants(strategy, rows(5), 0)
    with pytest.raises(MIPOStrategyError, match="not a PairingStrategy subclass"):
        get_strategy("mipo_ext_strategy:NOT_A_CLASS")
    with pytest.raises(MIPOStrategyError, match="has no attribute 'Missing'"):
        get_strategy("mipo_ext_strategy:Missing")
    with pytest.raises(MIPOStrategyError, match="cannot import module 'no_such_module_xyz'"):
        get_strategy("no_such_module_xyz:Thing")
    with pytest.raises(MIPOStrategyError, match="not a valid module:object path"):
        get_strategy("mipo_ext_strategy:")


# -- the contributor checks catch broken strategies -------------------------------------------------

class _Sloppy(_Echo):
    name = "sloppy_test"

    def pair(self, examples, responses, seed):
        responses.get(GenRequest(0, "never listed"))
        return [Pair(i, None, GenRequest(i, None), GenRequest(i, None)) for i in range(len(examples))]


class _Unseeded(_Echo):
    name = "unseeded_test"
    calls = 0

    def pair(self, examples, responses, seed):
        type(self).calls += 1
        return [Pair(i, None, GenRequest(i, None), GenRequest(i, "x"), {"n": self.calls}) for i in range(len(examples))]


def test_checks_catch_unlisted_lookups_same_requests_and_nondeterminism():
    with pytest.raises(AssertionError, match="did not list"):
        check_strategy_invariants(_Sloppy(), rows(3), 0)

    class SameRequest(_Echo):
        def pair(self, examples, responses, seed):
            return [Pair(i, None, GenRequest(i, None), GenRequest(i, None)) for i in range(len(examples))]

    with pytest.raises(AssertionError, match="same request"):
        check_strategy_invariants(SameRequest(), rows(3), 0)
    with pytest.raises(AssertionError, match="differs"):
        check_strategy_invariants(_Unseeded(), rows(3), 0)


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True])
def test_bad_seed_is_a_documented_error(seed):
    with pytest.raises(MIPOStrategyError, match="mipo.seed"):
        SwapContext().requests(rows(4), seed)
    with pytest.raises(MIPOStrategyError, match="mipo.seed"):
        constrained_derangement([[1, 2, 3]], seed)
