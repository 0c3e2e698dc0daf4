"""The generation-backend interface and the loop that fills the cache.

A backend turns rendered prompt texts into responses. ``generate_with_cache``
owns everything around it: dedupe, the cache, a deterministic batch plan (so an
interrupted run resumes with exactly the batches an uninterrupted one would
run), progress with rows/s and tokens/s, and the final summary line.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from axolotl_mipo.errors import MIPOGenerationError
from axolotl_mipo.generation.cache import GenerationCache, prompt_key

LOG = logging.getLogger("axolotl_mipo.generation")


@dataclass
class GenerationResult:
    text: str
    num_tokens: int


@dataclass
class GenerationStats:
    requested: int = 0
    cached: int = 0
    generated: int = 0
    tokens: int = 0
    seconds: float = 0.0
    empty: int = 0

    def summary(self) -> str:
        tps = self.tokens / self.seconds if self.seconds > 0 else 0.0
        return (
            f"generation: {self.requested} prompts, {self.cached} from cache, {self.generated} generated, "
            f"{self.tokens} tokens in {self.seconds:.1f}s ({tps:.1f} tokens/s), {self.empty} empty responses"
        )


class GenerationBackend(ABC):
    """Turns prompt texts (already chat-templated) into responses."""

    #: identifies the backend's settings in the cache key
    name: str = "base"

    @abstractmethod
    def cache_key_parts(self) -> dict:
        """Everything besides the prompt that changes a response (model, tokenizer, settings, seed)."""

    @abstractmethod
    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        """Token count of each prompt (for batching and length checks)."""

    @abstractmethod
    def generate_batch(self, prompts: Sequence[str]) -> list[GenerationResult]:
        """Responses for one batch, in order. May raise; the caller keeps what was cached before."""

    batch_size: int = 8

    def close(self) -> None:
        """Release the model (memory is needed for training next)."""


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first: an OOM shows up at once)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def generate_with_cache(
    backend: GenerationBackend,
    prompts: Sequence[str],
    cache: GenerationCache,
    *,
    progress: bool = True,
) -> tuple[dict[str, GenerationResult], GenerationStats]:
    """Responses for every distinct prompt, generating only those not cached.

    Returns a map from prompt text to result. Each finished batch is written to
    the cache before the next starts, so a crash loses at most one batch.
    """
    stats = GenerationStats()
    unique = list(dict.fromkeys(prompts))
    stats.requested = len(unique)
    keys = [prompt_key(p) for p in unique]
    out: dict[str, GenerationResult] = {}
    pending: list[int] = []
    for i, (p, k) in enumerate(zip(unique, keys)):
        hit = cache.get(k)
        if hit is None:
            pending.append(i)
        else:
            out[p] = GenerationResult(hit.text, hit.num_tokens)
    stats.cached = len(unique) - len(pending)
    if stats.cached:
        LOG.info(f"reusing {stats.cached} cached generations from {cache.dir}")
    if pending:
        lengths = backend.prompt_lengths([unique[i] for i in pending])
        batches = [[pending[j] for j in b] for b in plan_batches(lengths, backend.batch_size)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(pending), desc="mipo: generating", unit="resp")
        start = time.perf_counter()
        try:
            for batch in batches:
                batch_prompts = [unique[i] for i in batch]
                try:
                    results = backend.generate_batch(batch_prompts)
                except MIPOGenerationError:
                    raise
                except Exception as exc:
                    raise MIPOGenerationError(
                        f"generation failed after {stats.generated} new responses ({type(exc).__name__}: {exc}); "
                        f"the {len(cache)} responses generated so far are kept in {cache.dir} and a rerun resumes there"
                    ) from exc
                cache.add_many((keys[i], r.text, r.num_tokens) for i, r in zip(batch, results))
                for i, r in zip(batch, results):
                    out[unique[i]] = r
                    stats.tokens += r.num_tokens
                    stats.empty += int(not r.text.strip())
                stats.generated += len(batch)
                if bar is not None:
                    elapsed = max(time.perf_counter() - start, 1e-9)
                    bar.update(len(batch))
                    bar.set_postfix(rows_s=f"{stats.generated / elapsed:.2f}", tok_s=f"{stats.tokens / elapsed:.1f}")
        finally:
            stats.seconds = time.perf_counter() - start
            if bar is not None:
                bar.close()
    LOG.info(stats.summary())
    return out, stats
