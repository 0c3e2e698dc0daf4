"""The strategy-author checks catch unlisted lookups, repeated requests and nondeterminism."""

from __future__ import annotations

import pytest

from axolotl_mipo.pairing import (
    GenRequest,
    Pair,
)
from axolotl_mipo.testing.pairing_checks import (
    check_strategy_invariants,
)
from axolotl_mipo.testing.pairing_rows import EchoStrategy, rows

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)




class _Sloppy(EchoStrategy):
    name = "sloppy_test"

    def pair(self, examples, responses, seed):
        responses.get(GenRequest(0, "never listed"))
        return [Pair(i, None, GenRequest(i, None), GenRequest(i, None)) for i in range(len(examples))]


class _Unseeded(EchoStrategy):
    name = "unseeded_test"
    calls = 0

    def pair(self, examples, responses, seed):
        type(self).calls += 1
        return [Pair(i, None, GenRequest(i, None), GenRequest(i, "x"), {"n": self.calls}) for i in range(len(examples))]


def test_checks_catch_unlisted_lookups_same_requests_and_nondeterminism():
    with pytest.raises(AssertionError, match="did not list"):
        check_strategy_invariants(_Sloppy(), rows(3), 0)

    class SameRequest(EchoStrategy):
        def pair(self, examples, responses, seed):
            return [Pair(i, None, GenRequest(i, None), GenRequest(i, None)) for i in range(len(examples))]

    with pytest.raises(AssertionError, match="same request"):
        check_strategy_invariants(SameRequest(), rows(3), 0)
    with pytest.raises(AssertionError, match="differs"):
        check_strategy_invariants(_Unseeded(), rows(3), 0)
