"""``FakeBackend``: a generation backend with no model, for tests of everything around generation.

The pipeline (pair building, preference summaries, the cache loop) only sees
the :class:`~axolotl_mipo.generation.base.GenerationBackend` interface, so a
test, or the author of a pairing strategy, can run it end to end in
milliseconds::

    from axolotl_mipo.testing.fake_backend import FakeBackend

    backend = FakeBackend()                                  # "resp:<hash of the prompt>"
    backend = FakeBackend(lambda p: "yes" if "jazz" in p else "")
    backend = FakeBackend(fail_on_batch=3)                   # dies on its 3rd batch, like a lost server

Responses are a pure function of the prompt (so a cached run and a fresh run
agree), and the backend records what it was asked: ``calls`` (the interface
methods in call order), ``batches`` (the prompts of each generated batch) and
``seen_max_new_tokens`` (``max_new_tokens`` at each batch); ``generate_calls`` and
``prompts_generated`` count them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

from axolotl_mipo.generation.base import GenerationBackend, GenerationResult


def hash_response(prompt: str) -> GenerationResult:
    """The default response: ``resp:`` and 12 hex digits of the prompt's SHA-1 (distinct prompts, distinct
    responses), counted as 3 tokens."""
    return GenerationResult("resp:" + hashlib.sha1(prompt.encode()).hexdigest()[:12], 3)


def word_count(text: str) -> int:
    return len(text.split())


class FakeBackend(GenerationBackend):
    """Answers each prompt with ``respond(prompt)``; no model, no tokenizer.

    Args:
        respond: prompt text -> response, as a ``GenerationResult`` or a plain
            string (then its token count is its word count). Default:
            :func:`hash_response`.
        name: the backend's name, part of its cache key.
        batch_size: rows per batch that ``generate_with_cache`` plans.
        max_new_tokens: part of the cache key (the summary stage changes it
            for its own generations).
        prompt_length: prompt text -> its "token" count, for batching and
            length checks. Default: the word count.
        key: extra cache-key parts (e.g. to tell two fakes' caches apart).
        fail_on_batch: raise ``ConnectionError`` on this batch (1-based),
            after recording it, like a server that goes away mid-run.
    """

    def __init__(
        self,
        respond: Callable[[str], GenerationResult | str] = hash_response,
        *,
        name: str = "fake",
        batch_size: int = 4,
        max_new_tokens: int = 512,
        prompt_length: Callable[[str], int] = word_count,
        key: Mapping | None = None,
        fail_on_batch: int | None = None,
    ):
        self.respond, self.name, self.batch_size = respond, name, batch_size
        self.max_new_tokens, self.prompt_length, self.key = max_new_tokens, prompt_length, dict(key or {})
        self.fail_on_batch = fail_on_batch
        self.calls: list[str] = []
        self.batches: list[list[str]] = []
        self.seen_max_new_tokens: list[int] = []

    @property
    def generate_calls(self) -> int:
        """Calls of ``generate_batch`` (batches asked for, failed ones included)."""
        return len(self.batches)

    @property
    def prompts_generated(self) -> int:
        """Prompts asked of ``generate_batch``, over every batch."""
        return sum(len(b) for b in self.batches)

    def cache_key_parts(self) -> dict:
        return {"backend": self.name, "max_new_tokens": self.max_new_tokens, **self.key}

    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        self.calls.append("prompt_lengths")
        return [self.prompt_length(p) for p in prompts]

    def generate_batch(self, prompts: Sequence[str]) -> list[GenerationResult]:
        self.calls.append("generate_batch")
        self.batches.append(list(prompts))
        self.seen_max_new_tokens.append(self.max_new_tokens)
        if self.fail_on_batch is not None and len(self.batches) == self.fail_on_batch:
            raise ConnectionError("backend died")
        out = []
        for p in prompts:
            r = self.respond(p)
            out.append(r if isinstance(r, GenerationResult) else GenerationResult(r, word_count(r)))
        return out
