from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mipo_strategy_template import MyStrategy

from axolotl_mipo.errors import MIPOError
from axolotl_mipo.testing.pairing_checks import check_strategy_invariants, examples_strategy


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(examples_strategy(context="sometimes"), st.integers(0, 2**32 - 1))
def test_invariants(examples, seed):
    strategy = MyStrategy()
    try:
        strategy.validate(examples)
    except MIPOError:
        return  # documented refusals; test their messages separately
    pairs = check_strategy_invariants(strategy, examples, seed)
    # TODO: assert what is specific to your strategy
    assert len(pairs) == len(examples)
