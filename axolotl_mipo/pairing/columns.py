"""Column-wise helpers the built-in pairing strategies share (``strategies``, ``nearest``).

Performance notes (1M rows must plan and pair in well under 10 s): per-row work is done column-wise (lists
built by C-level map/attrgetter, numpy for partner gathers), because random access to a million scattered
Example objects costs a cache miss per row; and the cyclic GC is paused while the millions of small request
and pair objects are built (see :func:`no_gc`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import attrgetter

import numpy as np

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPODataError
from axolotl_mipo.pairing.base import GenRequest, PairingStrategy
from axolotl_mipo.pairing.derangement import factorize

__all__ = ["no_gc", "preview", "prompt_keys", "require_responses", "row_contexts", "row_indices", "where"]


@contextmanager
def no_gc() -> Iterator[None]:
    # Building millions of small acyclic objects makes the cyclic collector
    # rescan the growing heap over and over (about half the time on 1M rows);
    # none of these objects can form a cycle, so nothing is left uncollected.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def prompt_keys(examples: Sequence[Example]) -> np.ndarray:
    # equal messages <=> equal Example.query_key; hashing the tuples skips building a string per row
    return factorize(map(attrgetter("messages"), examples))


def row_indices(examples: Sequence[Example]) -> np.ndarray:
    return np.fromiter(map(attrgetter("index"), examples), dtype=np.int64, count=len(examples))


def preview(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def where(ex: Example) -> str:
    return f"row {ex.index}" + (f" in dataset {ex.source!r}" if ex.source else "")


def row_contexts(strategy: PairingStrategy, examples: Sequence[Example]) -> list[str]:
    """Every row's context; a row without one is a MIPODataError (requests()/pair() may run without validate())."""
    contexts = list(map(attrgetter("context"), examples))
    for pos, c in enumerate(contexts):
        if not c or c.isspace():
            ex = examples[pos]
            raise MIPODataError(
                f"pairing strategy {strategy.name!r} needs a user context in every row, this one has none; "
                "set the context field (mipo.datasets[].context_field) or use strategy mismatched_prompt",
                row=ex.index, field="context", source=ex.source or None,
            )
    return contexts


def require_responses(strategy: PairingStrategy, examples: Sequence[Example], responses: Mapping[GenRequest, str],
             requests: Sequence[GenRequest]) -> None:
    """Refuse, naming the row, a request that has no generated response."""
    for req in requests:
        if req not in responses:
            ex = examples[req.row]
            raise MIPODataError(
                f"pairing strategy {strategy.name!r} has no generated response for {req}; generate every request "
                "that requests() listed (with the same rows and seed) before calling pair()",
                row=ex.index, field="response", source=ex.source or None,
            )
