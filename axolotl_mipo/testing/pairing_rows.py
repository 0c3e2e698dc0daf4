"""Example rows and one factory per built-in strategy, shared by the pairing tests and the strategy-ecosystem tests
(part of the package, so that the end-to-end tests run against an installed wheel can import them too)."""

from __future__ import annotations

from axolotl_mipo.data.example import Example
from axolotl_mipo.pairing import GenRequest, Pair, PairingStrategy, build_strategy, get_strategy


def rows(n: int, *, contexts=None, queries=None) -> list[Example]:
    contexts = contexts if contexts is not None else [f"user {i % 7}" for i in range(n)]
    queries = queries if queries is not None else [f"query {i}" for i in range(n)]
    return [Example(index=100 + i, messages=(("user", queries[i]),), context=contexts[i], source="t")
            for i in range(n)]


def grouped_rows(n: int, *, contexts: int = 3, queries: int | None = None) -> list[Example]:
    queries = queries or n
    return [Example(index=10 + 2 * i, messages=(("user", f"question {i % queries}"),),
                    context=f"user {i % contexts} likes topic {i % contexts} and short answers", source="d")
            for i in range(n)]


FACTORIES = {
    "drop_context": lambda: get_strategy("drop_context"),
    "swap_context": lambda: get_strategy("swap_context"),
    "mismatched_prompt": lambda: get_strategy("mismatched_prompt"),
    "nearest_context": lambda: get_strategy("nearest_context", embedder="tfidf"),
    "nearest_context_top3": lambda: get_strategy("nearest_context", embedder="tfidf", top_k=3),
    "nearest_context_blocked": lambda: get_strategy("nearest_context", embedder="tfidf", exact_max=0, block_size=16),
    "mixture": lambda: build_strategy([{"name": "drop_context", "weight": 0.6},
                                       {"name": "nearest_context", "weight": 0.4, "kwargs": {"embedder": "tfidf"}}]),
    "mixture_swap": lambda: get_strategy("mixture", components=[{"name": "swap_context", "weight": 1},
                                                                {"name": "drop_context", "weight": 2}]),
}


class EchoStrategy(PairingStrategy):
    """A minimal valid strategy for the registry and invariant-check tests."""

    name = "echo_test"
    needs_context = False
    generations_per_row = 2

    def __init__(self, flip: bool = False):
        self.flip = flip

    def requests(self, examples, seed):
        return [r for i in range(len(examples)) for r in (GenRequest(i, None), GenRequest(i, "x"))]

    def pair(self, examples, responses, seed):
        return [Pair(i, None, GenRequest(i, None), GenRequest(i, "x")) for i in range(len(examples))]
