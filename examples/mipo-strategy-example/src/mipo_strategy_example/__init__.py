"""``shuffled_query``: an example third-party pairing strategy for axolotl-mipo.

chosen   = the model's answer to row i's query, generated WITH row i's user context;
rejected = the model's answer to ANOTHER row's query (a different prompt), generated
           with row i's user context too;
both are stored under row i's prompt (its query and its context).

Why this is a valid negative: the rejected response is just as personalised (it
saw the same user context), but it answers a different question. DPO on the pair
raises ``log pi(y+ | x, c) - log pi(y- | x, c)`` for a ``y-`` that carries the
user's style without addressing ``x``: the pointwise mutual information between
the *query* and the response, given the context. It guards against the failure
that context-heavy training invites, a model that echoes the persona whatever was
asked. It complements ``drop_context`` (which teaches "use the context") and is a
natural partner in a mixture::

    mipo:
      strategy:
        - {name: drop_context, weight: 0.7}
        - {name: shuffled_query, weight: 0.3}

The partner row ``j`` is drawn uniformly (seeded) among the rows whose prompt
differs from row ``i``'s, so a row is never paired with itself or with a copy of
its own question. Two generations per row, both new: nothing is shared with
other rows' requests except by coincidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPODataError, MIPOStrategyError
from axolotl_mipo.pairing import GenRequest, Pair, PairingStrategy

__all__ = ["ShuffledQuery"]
__version__ = "0.1.0"


class ShuffledQuery(PairingStrategy):
    """Rejected: another query's answer under the same user context (see the module docstring)."""

    name = "shuffled_query"
    needs_context = True          # validate() refuses a row without a context, before any generation
    min_distinct_contexts = 1
    min_distinct_prompts = 2      # a partner with a different prompt must exist
    generations_per_row = 2

    def _partners(self, examples: Sequence[Example], seed: int) -> np.ndarray:
        # prompt ids, equal exactly where the conversations are equal
        ids: dict[tuple, int] = {}
        prompt = np.array([ids.setdefault(ex.messages, len(ids)) for ex in examples], dtype=np.int64)
        if len(ids) < 2:
            raise MIPOStrategyError(
                f"pairing strategy {self.name!r} needs at least 2 distinct prompts, the data has {len(ids)}"
            )
        # Rows sorted by prompt form one block per prompt: draw an offset among the rows outside
        # the row's own block, then step over the block. Uniform, seeded, and O(n).
        counts = np.bincount(prompt)
        order = np.argsort(prompt, kind="stable")
        starts = np.cumsum(counts) - counts
        rng = np.random.default_rng(seed)
        r = rng.integers(0, len(examples) - counts[prompt])
        r += (r >= starts[prompt]) * counts[prompt]
        return order[r]

    def _plan(self, examples: Sequence[Example], seed: int) -> list[Pair]:
        for ex in examples:
            if not ex.context or not ex.context.strip():
                # requests()/pair() may be called without validate(); refuse the same way
                raise MIPODataError(f"pairing strategy {self.name!r} needs a user context in every row",
                                    row=ex.index, field="context", source=ex.source or None)
        partner = self._partners(examples, seed).tolist()
        return [
            Pair(row=i, prompt_context=ex.context,
                 chosen=GenRequest(i, ex.context),
                 rejected=GenRequest(j, ex.context),  # row j's query, row i's context
                 meta={"partner_row": j, "partner_index": examples[j].index})
            for i, (ex, j) in enumerate(zip(examples, partner))
        ]

    def requests(self, examples: Sequence[Example], seed: int) -> list[GenRequest]:
        return [r for p in self._plan(examples, seed) for r in (p.chosen, p.rejected)]

    def pair(self, examples: Sequence[Example], responses: Mapping[GenRequest, str], seed: int) -> list[Pair]:
        pairs = self._plan(examples, seed)
        for p in pairs:
            for req in (p.chosen, p.rejected):
                if req not in responses:
                    ex = examples[p.row]
                    raise MIPODataError(f"no generated response for {req}; run requests() first",
                                        row=ex.index, field="response", source=ex.source or None)
        return pairs
