"""A look at the planned pairs before anything is generated.

When many users ask the same query, ``drop_context`` generates ONE
context-free response for all of them (the rendered prompt is the same, so the
cache returns the same text): every one of those rows gets the same rejected
response, and the pairs teach little beyond "avoid this one text". The CPU
proof run found this is why ``drop_context`` did not move the model there.

:func:`rejected_prompt_sharing` counts, from the pairing plan alone (each
request answered by a placeholder, no model), how many rows share each
rejected prompt and how many distinct rejected prompts there are;
:func:`warn_if_degenerate` logs it and warns, naming the strategies that give
each row its own rejected prompt, when the pairs degenerate.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from axolotl_mipo.data.example import Example

LOG = logging.getLogger(__name__)

#: the pairs are degenerate when, on average, this many rows share each rejected prompt ...
DEGENERATE_ROWS_PER_PROMPT = 2.0
#: ... or when this share of the rows sits on rejected prompts shared by at least CROWD rows each (a quarter of
#: the users asking a few popular queries is degenerate even when the mean is low; swap_context's chance
#: collisions of two or three rows on one partner context are not)
DEGENERATE_CROWDED_FRACTION = 0.2
CROWD = 5

REMEDY = (
    "use strategy swap_context or nearest_context (the rejected response is generated under another user's "
    "context, so it differs per row), or a mixture such as mipo.strategy: [{name: drop_context, weight: 1}, "
    "{name: swap_context, weight: 1}]"
)


@dataclass(frozen=True)
class RejectedSharing:
    """How the planned pairs share their rejected prompts."""

    pairs: int
    distinct_rejected_prompts: int
    max_rows_per_prompt: int
    rows_sharing: int  # pairs whose rejected prompt at least one other pair also uses
    rows_crowded: int = 0  # pairs whose rejected prompt at least CROWD pairs use

    @property
    def rows_per_prompt(self) -> float:
        return self.pairs / self.distinct_rejected_prompts if self.distinct_rejected_prompts else 0.0

    @property
    def shared_fraction(self) -> float:
        return self.rows_sharing / self.pairs if self.pairs else 0.0

    @property
    def crowded_fraction(self) -> float:
        return self.rows_crowded / self.pairs if self.pairs else 0.0

    @property
    def degenerate(self) -> bool:
        return self.pairs > 0 and (self.rows_per_prompt >= DEGENERATE_ROWS_PER_PROMPT
                                   or self.crowded_fraction >= DEGENERATE_CROWDED_FRACTION)

    def summary(self) -> str:
        return (f"mipo: {self.pairs} pairs planned over {self.distinct_rejected_prompts} distinct rejected prompts "
                f"({self.rows_per_prompt:.2f} rows per rejected prompt, at most {self.max_rows_per_prompt}; "
                f"{self.rows_sharing} rows ({100 * self.shared_fraction:.0f}%) share their rejected prompt with "
                f"another row)")


class _Placeholders(Mapping):
    """A distinct stand-in response for every planned request, made on access (no dict of millions)."""

    def __init__(self, requests):
        self._requests = requests if isinstance(requests, (set, frozenset)) else frozenset(requests)

    def __getitem__(self, req):
        if req not in self._requests:
            raise KeyError(req)
        # distinct per request, so no strategy sees two requests answer the same text
        return f"\x00{req.row}\x00{req.context is None}\x00{hash(req.context)}\x00{hash(req.query)}"

    def __contains__(self, req) -> bool:
        return req in self._requests

    def __iter__(self):
        return iter(self._requests)

    def __len__(self) -> int:
        return len(self._requests)


def rejected_prompt_sharing(examples: Sequence[Example], strategy, seed: int, requests=None) -> RejectedSharing:
    """Count rows per rejected prompt from the strategy's plan (placeholder responses, no model).

    Two requests render the same prompt exactly when they ask for the same
    conversation under the same context, so ``(messages, context)`` is the key.
    """
    reqs = requests if requests is not None else strategy.requests(examples, seed)
    enabled = gc.isenabled()
    gc.disable()  # millions of acyclic pairs and keys: see rows._no_gc
    try:
        pairs = strategy.pair(examples, _Placeholders(reqs), seed)
        counts = Counter((examples[p.rejected.row].messages, p.rejected.context, p.rejected.query) for p in pairs)
        n_pairs = len(pairs)
        del pairs
    finally:
        if enabled:
            gc.enable()
    return RejectedSharing(
        pairs=n_pairs,
        distinct_rejected_prompts=len(counts),
        max_rows_per_prompt=max(counts.values(), default=0),
        rows_sharing=sum(n for n in counts.values() if n > 1),
        rows_crowded=sum(n for n in counts.values() if n >= CROWD),
    )


def warn_if_degenerate(sharing: RejectedSharing, strategy_name: str) -> bool:
    """Log the sharing; warn (and return True) when the rejected prompts are shared enough to degenerate."""
    LOG.info(sharing.summary())
    if not sharing.degenerate:
        return False
    LOG.warning(
        f"mipo: degenerate pairs: strategy {strategy_name!r} plans {sharing.pairs} pairs over "
        f"{sharing.distinct_rejected_prompts} distinct rejected prompts ({sharing.rows_per_prompt:.1f} rows per "
        f"prompt; {100 * sharing.crowded_fraction:.0f}% of the rows on prompts shared by {CROWD} or more, up to "
        f"{sharing.max_rows_per_prompt}): many users ask the same queries, so their rejected responses are the "
        f"same generation; {REMEDY}"
    )
    return True
