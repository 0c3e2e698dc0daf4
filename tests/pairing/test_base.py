"""PairingStrategy: declared fields (required_fields) are checked before any generation."""

from __future__ import annotations

import pytest

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPODataError, MIPOStrategyError
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.pairing import (
    GenRequest,
    Pair,
    PairingStrategy,
    build_strategy,
    get_strategy,
)
from axolotl_mipo.pipeline.builder import build_preference_rows
from axolotl_mipo.testing.fake_backend import FakeBackend
from axolotl_mipo.testing.pairing_checks import check_strategy_invariants
from axolotl_mipo.testing.pairing_rows import FACTORIES, grouped_rows


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
    rows = grouped_rows(n)
    rows[2] = Example(index=rows[2].index, messages=rows[2].messages, context=None, source="d")
    return rows


def _one_prompt(n=6):
    return [Example(index=i, messages=(("user", "the same question"),), source="d") for i in range(n)]


REFUSALS = [
    ("drop_context", _no_context_in_row_2, MIPODataError, "row 14.*context"),
    ("swap_context", _no_context_in_row_2, MIPODataError, "row 14.*context"),
    ("nearest_context", _no_context_in_row_2, MIPODataError, "row 14.*context"),
    ("nearest_context", lambda: grouped_rows(6, contexts=1), MIPOStrategyError, "2 distinct user contexts"),
    ("mismatched_prompt", _one_prompt, MIPOStrategyError, "distinct prompts"),
    ("needs_reference", lambda: grouped_rows(4), MIPODataError, "row 10.*'reference'"),
    # every row of a mixture must carry every component's fields
    ("mixture", _no_context_in_row_2, MIPODataError, "row 14.*context"),
    # a component whose share of the rows cannot be paired is refused in requests(), still before generation
    ("mixture_tiny_share", lambda: grouped_rows(12, contexts=6), MIPOStrategyError, "mixture component 'swap_context'"),
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
    backend = FakeBackend(name="recording")
    with pytest.raises(error, match=match):
        build_preference_rows(rows(), strategy, backend, GenerationCache(tmp_path, {}), tok, progress=False,
                              max_prompt_tokens=1000)
    assert backend.calls == [], "the backend was used before the data was validated"


def test_required_fields_accepts_rows_that_carry_them():
    rows = [Example(index=i, messages=(("user", f"q{i}"),), context="c", meta={"reference": f"r{i}"})
            for i in range(3)]
    check_strategy_invariants(_NeedsReference(), rows, 0)
