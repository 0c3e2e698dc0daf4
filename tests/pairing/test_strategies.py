"""The built-in pairing strategies: drop_context, swap_context, mismatched_prompt."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPODataError, MIPOError, MIPOStrategyError
from axolotl_mipo.pairing import (
    GenRequest,
    PairingStrategy,
    constrained_derangement,
    get_strategy,
)
from axolotl_mipo.pairing.strategies import DropContext, MismatchedPrompt, SwapContext
from axolotl_mipo.testing.pairing_checks import (
    check_strategy_invariants,
    examples_strategy,
    fake_responses,
)

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


def rows(n: int, *, contexts=None, queries=None) -> list[Example]:
    contexts = contexts if contexts is not None else [f"user {i % 7}" for i in range(n)]
    queries = queries if queries is not None else [f"query {i}" for i in range(n)]
    return [Example(index=100 + i, messages=(("user", queries[i]),), context=contexts[i], source="t")
            for i in range(n)]


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


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True])
def test_bad_seed_is_a_documented_error(seed):
    with pytest.raises(MIPOStrategyError, match="mipo.seed"):
        SwapContext().requests(rows(4), seed)
    with pytest.raises(MIPOStrategyError, match="mipo.seed"):
        constrained_derangement([[1, 2, 3]], seed)
