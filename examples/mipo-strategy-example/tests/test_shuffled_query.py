"""The example strategy's tests: the shared invariants, plus what is specific to shuffled_query."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mipo_strategy_example import ShuffledQuery

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPOError, MIPOStrategyError
from axolotl_mipo.testing.pairing_checks import check_strategy_invariants, examples_strategy


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(examples_strategy(context="sometimes"), st.integers(0, 2**32 - 1))
def test_invariants_and_partner_has_another_prompt_and_the_same_context(examples, seed):
    strategy = ShuffledQuery()
    try:
        strategy.validate(examples)
    except MIPOError:
        return  # a documented refusal (no context, one prompt); the next test checks one
    for p in check_strategy_invariants(strategy, examples, seed):
        j = p.meta["partner_row"]
        assert j != p.row and examples[j].messages != examples[p.row].messages
        assert p.chosen.context == p.rejected.context == p.prompt_context == examples[p.row].context
        assert p.rejected.row == j


def test_one_prompt_is_refused_before_generation():
    rows = [Example(index=i, messages=(("user", "same"),), context=f"user {i}") for i in range(4)]
    with pytest.raises(MIPOStrategyError, match="distinct prompts"):
        ShuffledQuery().validate(rows)
