"""The built-in pairing strategies: ``drop_context``, ``swap_context`` and ``mismatched_prompt``.

All three make one pair per row. They differ in where the rejected response
comes from:

=====================  ==============================  ===============================  ==============
strategy               chosen                          rejected                         prompt context
=====================  ==============================  ===============================  ==============
``drop_context``       row i, its own context          row i, no context                row i's
``swap_context``       row i, its own context          row i, another user's context    row i's
``mismatched_prompt``  row i, no context               row sigma(i), no context         none
=====================  ==============================  ===============================  ==============

``drop_context`` is the default of MIPO (arXiv 2603.19294) for personalization,
``swap_context`` its appendix ablation, ``mismatched_prompt`` its reasoning / general variant
(sigma is a seeded derangement, see :mod:`axolotl_mipo.pairing.derangement`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat

import numpy as np

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPOStrategyError
from axolotl_mipo.pairing.base import GenRequest, Pair, PairingStrategy
from axolotl_mipo.pairing.columns import (
    no_gc,
    preview,
    prompt_keys,
    require_responses,
    row_contexts,
    row_indices,
    where,
)
from axolotl_mipo.pairing.derangement import constrained_derangement, dominant_key, factorize, seeded_rng
from axolotl_mipo.pairing.registry import register_strategy

__all__ = ["DropContext", "MismatchedPrompt", "SwapContext"]


@register_strategy
class DropContext(PairingStrategy):
    """MIPO's default: chosen is generated with the user's context, rejected with the context dropped.

    Both responses are stored under the context-augmented prompt, so DPO raises
    ``log pi(y+ | x, c) - log pi(y- | x, c)`` for a ``y-`` that did not see
    ``c``: the pointwise mutual information between context and response.
    No randomness: the seed is accepted and ignored. ``meta`` is empty.
    """

    name = "drop_context"
    needs_context = True
    min_distinct_contexts = 1
    min_distinct_prompts = 1
    generations_per_row = 2

    def _plan(self, examples: Sequence[Example]) -> tuple[list[str], list[GenRequest], list[GenRequest]]:
        contexts = row_contexts(self, examples)
        rows = range(len(examples))
        with no_gc():
            return contexts, list(map(GenRequest, rows, contexts)), list(map(GenRequest, rows, repeat(None)))

    def requests(self, examples: Sequence[Example], seed: int) -> list[GenRequest]:
        _, chosen, rejected = self._plan(examples)
        out: list[GenRequest] = [None] * (2 * len(chosen))  # type: ignore[list-item]
        out[0::2], out[1::2] = chosen, rejected
        return out

    def pair(self, examples: Sequence[Example], responses: Mapping[GenRequest, str], seed: int) -> list[Pair]:
        contexts, chosen, rejected = self._plan(examples)
        require_responses(self, examples, responses, chosen)
        require_responses(self, examples, responses, rejected)
        with no_gc():
            return list(map(Pair, range(len(examples)), contexts, chosen, rejected))


@register_strategy
class SwapContext(PairingStrategy):
    """The paper's ablation: rejected is generated for the same query under another user's context.

    Row ``i``'s partner ``j`` is drawn uniformly among the rows whose context
    *text* differs from row ``i``'s (another row of the same user, or a copy of
    the same context, would make chosen and rejected come from the same
    distribution). The draw is a function of the rows and ``seed`` only, so
    :meth:`requests` and :meth:`pair` find the same partner. ``meta`` holds
    ``partner_row`` (position in ``examples``) and ``partner_index``
    (``Example.index``, the row number in the user's file).
    """

    name = "swap_context"
    needs_context = True
    min_distinct_contexts = 2
    min_distinct_prompts = 1
    generations_per_row = 2

    def _plan(self, examples: Sequence[Example], seed: int):
        contexts = row_contexts(self, examples)
        first: dict[str, int] = {}
        setdefault = first.setdefault
        ctx_ids = np.fromiter((setdefault(c, len(first)) for c in contexts), dtype=np.int64, count=len(contexts))
        if len(first) < 2:
            raise MIPOStrategyError(
                f"pairing strategy {self.name!r} needs at least 2 distinct user contexts, the data has "
                f"{len(first)}; add rows from other users or use strategy drop_context"
            )
        partner = self._draw_partners(ctx_ids, seed)
        # one object per distinct text (the first row's), so both phases build equal requests cheaply
        canon = list(first)
        own = list(map(canon.__getitem__, ctx_ids.tolist()))
        other = list(map(canon.__getitem__, ctx_ids[partner].tolist()))
        rows = range(len(examples))
        with no_gc():
            chosen = list(map(GenRequest, rows, own))
            rejected = list(map(GenRequest, rows, other))
        return own, partner, chosen, rejected

    @staticmethod
    def _draw_partners(ctx_ids: np.ndarray, seed: int) -> np.ndarray:
        n = ctx_ids.size
        counts = np.bincount(ctx_ids)
        # Rows sorted by context form one block per context: draw an offset among
        # the n - count rows outside the row's block, then step over the block.
        order = np.argsort(ctx_ids, kind="stable")
        starts = np.cumsum(counts) - counts
        rng = seeded_rng(seed)
        r = rng.integers(0, n - counts[ctx_ids])
        r += (r >= starts[ctx_ids]) * counts[ctx_ids]
        return order[r]

    def partners(self, examples: Sequence[Example], seed: int) -> np.ndarray:
        """Row ``i``'s partner row, for every ``i``: a seeded uniform draw among rows with a different context text."""
        return self._plan(examples, seed)[1]

    def requests(self, examples: Sequence[Example], seed: int) -> list[GenRequest]:
        _, _, chosen, rejected = self._plan(examples, seed)
        out: list[GenRequest] = [None] * (2 * len(chosen))  # type: ignore[list-item]
        out[0::2], out[1::2] = chosen, rejected
        return out

    def pair(self, examples: Sequence[Example], responses: Mapping[GenRequest, str], seed: int) -> list[Pair]:
        own, partner, chosen, rejected = self._plan(examples, seed)
        require_responses(self, examples, responses, chosen)
        require_responses(self, examples, responses, rejected)
        partner_index = row_indices(examples)[partner].tolist()
        with no_gc():
            meta = [{"partner_row": j, "partner_index": k} for j, k in zip(partner.tolist(), partner_index)]
            return list(map(Pair, range(len(examples)), own, chosen, rejected, meta))


@register_strategy
class MismatchedPrompt(PairingStrategy):
    """MIPO's reasoning / general variant: rejected is the model's response to a different prompt.

    One generation per row, with no context (``Example.context`` is ignored
    even when present: MIPO's variant, arXiv 2603.19294, has prompts only). Row ``i``'s
    rejected response is the response of row ``sigma(i)``, where ``sigma`` is
    a seeded derangement (:func:`constrained_derangement`) that never pairs a
    row with itself, with a row of the identical prompt (equal
    ``Example.messages``, i.e. equal ``Example.query_key``), or with a row
    whose response is identical after stripping surrounding whitespace (the
    builder drops such pairs anyway, and they carry no signal). Pairs are
    stored under row ``i``'s prompt with no context. ``meta`` holds
    ``partner_row`` and ``partner_index``.

    :meth:`validate` refuses data where one prompt covers more than half of the
    rows (then no such derangement exists); :meth:`pair` refuses responses
    where one text covers more than half.
    """

    name = "mismatched_prompt"
    needs_context = False
    prompt_only = True
    min_distinct_contexts = 1
    min_distinct_prompts = 2
    generations_per_row = 1

    def validate(self, examples: Sequence[Example]) -> None:
        # The base class's distinct-prompt count builds a query_key string per
        # row; the same count comes from the prompt ids computed here anyway.
        if not examples:
            super().validate(examples)
        prompt_ids = prompt_keys(examples)
        distinct = int(prompt_ids.max()) + 1
        if distinct < self.min_distinct_prompts:
            raise MIPOStrategyError(
                f"pairing strategy {self.name!r} needs at least {self.min_distinct_prompts} distinct prompts, "
                f"the data has {distinct}; add rows with other prompts"
            )
        self._check_prompts(examples, prompt_ids)

    def _check_prompts(self, examples: Sequence[Example], prompt_ids: np.ndarray) -> None:
        row, count, n = dominant_key(prompt_ids)
        if n < 2 or count > n - count:
            ex = examples[row]
            raise MIPOStrategyError(
                f"pairing strategy {self.name!r} pairs each row with a row of a different prompt, but the prompt "
                f"of {where(ex)} ({preview(' | '.join(c for _, c in ex.messages))}) is shared by {count} of {n} "
                "rows, more than half; deduplicate that prompt or add rows with other prompts"
            )

    def requests(self, examples: Sequence[Example], seed: int) -> list[GenRequest]:
        with no_gc():
            return list(map(GenRequest, range(len(examples)), repeat(None)))

    def _partners(self, examples: Sequence[Example], responses: Mapping[GenRequest, str], seed: int,
                  reqs: list[GenRequest]) -> np.ndarray:
        prompt_ids = prompt_keys(examples)
        self._check_prompts(examples, prompt_ids)
        raw = list(map(responses.get, reqs))
        if None in raw:
            require_responses(self, examples, responses, [reqs[raw.index(None)]])
        texts = [t.strip() for t in raw]
        response_ids = factorize(texts)
        row, count, n = dominant_key(response_ids)
        if count > n - count:
            raise MIPOStrategyError(
                f"pairing strategy {self.name!r} never pairs two identical responses, but the response of "
                f"{where(examples[row])} ({preview(texts[row])}) was generated for {count} of {n} rows, more than "
                "half; raise mipo.generation.temperature or max_new_tokens, or add more varied prompts"
            )
        try:
            return constrained_derangement([prompt_ids, response_ids], seed)
        except MIPOStrategyError as e:
            raise MIPOStrategyError(
                f"pairing strategy {self.name!r} could not pair every row with a row of a different prompt and a "
                f"different response (key array 0: prompts, 1: responses): {e}"
            ) from None

    def partners(self, examples: Sequence[Example], responses: Mapping[GenRequest, str], seed: int) -> np.ndarray:
        """``sigma``: row ``i``'s partner row, for every ``i`` (see the class docstring)."""
        return self._partners(examples, responses, seed, self.requests(examples, seed))

    def pair(self, examples: Sequence[Example], responses: Mapping[GenRequest, str], seed: int) -> list[Pair]:
        reqs = self.requests(examples, seed)
        sigma = self._partners(examples, responses, seed, reqs)
        partner_index = row_indices(examples)[sigma].tolist()
        sigma_list = sigma.tolist()
        with no_gc():
            rejected = list(map(reqs.__getitem__, sigma_list))
            meta = [{"partner_row": j, "partner_index": k} for j, k in zip(sigma_list, partner_index)]
            return list(map(Pair, range(len(examples)), repeat(None), reqs, rejected, meta))
