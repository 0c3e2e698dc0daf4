"""TODO: what the rejected response is, and why it is a valid negative for MIPO.

As shipped, this template is the paper's default (chosen with the row's context,
rejected without it), so that its tests pass before you change anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPODataError
from axolotl_mipo.pairing import GenRequest, Pair, PairingStrategy


class MyStrategy(PairingStrategy):
    """TODO: one paragraph; say how partners are chosen and what ``meta`` holds."""

    name = "my_strategy"           # TODO: the entry point's name
    needs_context = True           # TODO: False for prompt-only data
    required_fields = ()           # TODO: e.g. ("reference",) for a field of Example.meta
    min_distinct_contexts = 1      # TODO: 2 if rows are paired with other users' contexts
    min_distinct_prompts = 1       # TODO: 2 if rows are paired with other prompts
    generations_per_row = 2        # TODO: the most distinct GenRequests you list per row

    def __init__(self) -> None:    # TODO: options from mipo.strategy_kwargs become keyword arguments here
        pass

    def requests(self, examples: Sequence[Example], seed: int) -> list[GenRequest]:
        # TODO: every generation pair() will look up; deterministic given (examples, seed)
        return [r for i, ex in enumerate(examples) for r in (GenRequest(i, ex.context), GenRequest(i, None))]

    def pair(self, examples: Sequence[Example], responses: Mapping[GenRequest, str], seed: int) -> list[Pair]:
        # TODO: one Pair per row (or fewer); look up only what requests() listed
        pairs = []
        for i, ex in enumerate(examples):
            chosen, rejected = GenRequest(i, ex.context), GenRequest(i, None)
            if chosen not in responses or rejected not in responses:
                raise MIPODataError("no generated response; run requests() first", row=ex.index, field="response")
            pairs.append(Pair(i, ex.context, chosen, rejected))
        return pairs
