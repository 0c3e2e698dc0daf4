"""The generation-backend interface and the loop that fills the cache.

A backend turns rendered prompt texts into responses. ``generate_with_cache``
owns everything around it: dedupe, the cache, a deterministic batch plan (so an
interrupted run resumes with exactly the batches an uninterrupted one would
run), progress with rows/s and tokens/s, and the final summary line.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
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

    def budget_extra_tokens(self) -> int | None:
        """Tokens generated per row, when batches should be sized by a token budget (``None``: fixed size)."""
        return None

    def workers(self) -> list["GenerationBackend"]:
        """Backends that run batches at the same time, e.g. one model copy per GPU (most backends: itself)."""
        return [self]

    def close(self) -> None:
        """Release the model (memory is needed for training next)."""


class LoadedOnFirstUse:
    """A backend's model (or engine), made by ``load()`` when first asked for.

    Nothing about the cache key needs the weights, so a run whose responses are
    all cached (``axolotl train`` after ``axolotl preprocess``) never loads them.
    ``on_load`` sees the value once, whether it was given or loaded. A load that
    fails raises a final :class:`MIPOGenerationError` naming the loader's own
    error, and so does every later ``get()``: nothing is loaded twice.
    """

    def __init__(self, value=None, load: Callable[[], object] | None = None,
                 on_load: Callable[[object], None] | None = None):
        if value is None and load is None:
            raise ValueError("give a value or a function that loads it")
        self.value, self._load, self._on_load = value, load, on_load
        self._failed: str | None = None
        if value is not None and on_load is not None:
            on_load(value)

    def get(self):
        if self.value is None and self._failed is not None:
            # not loaded again: a half-started engine may still hold GPU memory, and a retry would hide the
            # first error behind "'NoneType' object has no attribute ..."
            raise MIPOGenerationError(f"the generation model could not be loaded earlier in this run: {self._failed}")
        if self.value is None and self._load is not None:
            load, self._load = self._load, None
            try:
                value = load()
            except Exception as exc:
                # only the text is kept: the exception's frames hold whatever the loader had built so far
                self._failed = f"{type(exc).__name__}: {exc}"
                raise MIPOGenerationError(f"loading the generation model failed ({self._failed})") from exc
            self.value = value
            if self._on_load is not None:
                self._on_load(self.value)
        return self.value

    def drop(self) -> None:
        """Release the value; it is not loaded again."""
        self.value, self._load = None, None


def stop_token_ids(generation_eos, tokenizer) -> list[int]:
    """The token ids that end a response: the model's generation-config EOS (an id or a list) and the
    tokenizer's EOS. The tokenizer is Axolotl's, so a YAML ``eos_token`` override (chatml on a base model)
    counts. Every backend that runs the model itself stops on exactly these."""
    ids = set(generation_eos if isinstance(generation_eos, (list, tuple)) else
              [generation_eos] if generation_eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(int(i) for i in ids)


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def release_frames(exc: BaseException | None) -> None:
    """Let go of what ``exc``'s traceback holds, so that the model is freed while the exception lives on.

    A failed generate's traceback reaches into the model's (or vLLM's) own frames, whose ``self`` is the
    model; a frame also keeps its function, and with it the closure a nested function captured (torch's
    ``Module._call_impl`` has one holding the module). While the exception is alive (it propagates out of
    ``load_datasets``; a caller may keep it) the model and its GPU memory would be too, although the
    backend was closed. So, for ``exc`` and every exception it was raised from or during: the traceback
    is cut after the last frame of this package, the frames cut off are kept as text in a note (printed
    with the exception, as a traceback would be), and the local variables of the frames left are cleared
    (file and line stay).
    """
    import traceback

    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        last_ours, tb = None, e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
                last_ours = tb
            tb = tb.tb_next
        if last_ours is not None and last_ours.tb_next is not None:
            inner = "".join(traceback.format_tb(last_ours.tb_next))
            e.add_note("frames below, released to free the model's memory:\n" + inner.rstrip())
            last_ours.tb_next = None
        if e.__traceback__ is not None:
            traceback.clear_frames(e.__traceback__)
        todo += [e.__cause__, e.__context__]


def token_lengths(tokenizer, prompts: Sequence[str]) -> list[int]:
    """Token count of each already-templated prompt (the template holds BOS: no special tokens added)."""
    return [len(x) for x in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]


def sampling_key_parts(backend) -> dict:
    """The sampling settings that change a response, shared by the server-side backends' cache keys.

    Greedy decoding ignores top-p/top-k and the seed, so they are left out of the key then.
    """
    greedy = backend.temperature == 0
    return {
        "backend": backend.name,
        "max_new_tokens": backend.max_new_tokens,
        "temperature": backend.temperature,
        "top_p": 1.0 if greedy else backend.top_p,
        "top_k": None if greedy else backend.top_k,
        "repetition_penalty": backend.repetition_penalty,
        "seed": None if greedy else backend.seed,
    }


def plan_batches(lengths: Sequence[int], batch_size: int, extra_tokens: int | None = None,
                 max_rows_factor: int = 4) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (an OOM shows up at once).

    With ``extra_tokens`` (the tokens each row will generate), batches are sized
    by a token budget instead of a row count: the first (longest) batch has
    ``batch_size`` rows and sets the budget ``batch_size * (longest + extra)``;
    later, shorter batches take as many rows as fit in the same budget (at most
    ``max_rows_factor * batch_size``). Peak memory stays that of the first batch
    while short prompts need fewer, fuller batches, hence fewer decode steps.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    if extra_tokens is None or not order:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    budget = batch_size * (lengths[order[0]] + extra_tokens)
    cap = max_rows_factor * batch_size
    batches, i = [], 0
    while i < len(order):
        width = lengths[order[i]] + extra_tokens  # the batch's longest row sets its padded width
        rows = max(1, min(cap, budget // max(width, 1)))
        batches.append(order[i : i + rows])
        i += rows
    return batches


def _run_batch(backend: GenerationBackend, prompts: list[str], retries: int, backoff_s: float,
               done: int, cache: GenerationCache) -> list[GenerationResult]:
    last: BaseException | None = None
    for attempt in range(retries + 1):
        try:
            results = backend.generate_batch(prompts)
            if len(results) != len(prompts):
                raise RuntimeError(f"backend returned {len(results)} responses for {len(prompts)} prompts")
            return results
        except MIPOGenerationError as exc:  # the backend already retried, or the error is final
            last = exc
            break
        except Exception as exc:  # noqa: BLE001 - any backend failure is retried, then reported
            last = exc
            if attempt < retries:
                wait = backoff_s * (2**attempt)
                LOG.warning(f"generation batch failed ({type(exc).__name__}: {exc}); retry {attempt + 1}/{retries} "
                            f"in {wait:.1f}s")
                time.sleep(wait)
    raise MIPOGenerationError(
        f"generation failed after {done} new responses ({type(last).__name__}: {last}); the {len(cache)} "
        f"responses generated so far are kept in {cache.dir} and a rerun resumes there"
    ) from last


def _run_batches(workers: Sequence[GenerationBackend], batches: list[list[int]], texts: Sequence[str],
                 retries: int, backoff_s: float, stats: GenerationStats, cache: GenerationCache):
    """Yields ``(batch, results)`` as batches finish. With several workers each runs in its own thread and
    takes the next batch when it finishes one, so a faster device does more of them.

    The caller writes the cache, from this thread only. When a worker fails, the others finish the batch
    they are on (it is yielded, so it is cached) and take no new one; then the first error is raised.
    """
    if len(workers) == 1:
        for batch in batches:
            yield batch, _run_batch(workers[0], [texts[i] for i in batch], retries, backoff_s, stats.generated, cache)
        return
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for batch in batches:
        todo.put(batch)
    done: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def work(worker: GenerationBackend) -> None:
        try:
            while not stop.is_set():
                try:
                    batch = todo.get_nowait()
                except queue.Empty:
                    return
                done.put((batch, _run_batch(worker, [texts[i] for i in batch], retries, backoff_s,
                                            stats.generated, cache)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            stop.set()
            done.put((None, exc))
        finally:
            done.put(None)  # this worker is finished

    threads = [threading.Thread(target=work, args=(w,), name=f"mipo-generate-{i}", daemon=True)
               for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    error: BaseException | None = None
    running = len(threads)
    try:
        while running:
            item = done.get()
            if item is None:
                running -= 1
            elif item[0] is None:
                error = error or item[1]
            else:
                yield item
    finally:
        stop.set()  # also when the caller stops early (an error writing the cache, Ctrl-C)
        for t in threads:
            t.join()
    if error is not None:
        raise error


def generate_with_cache(
    backend: GenerationBackend,
    prompts: Sequence[str],
    cache: GenerationCache,
    *,
    progress: bool = True,
    retries: int = 0,
    backoff_s: float = 1.0,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
) -> tuple[dict[str, GenerationResult], GenerationStats]:
    """Responses for every distinct prompt, generating only those not cached.

    Returns a map from prompt text to result. Each finished batch is written to
    the cache as soon as it is done, so a crash loses at most the batches in
    flight: one, or one per model copy when the backend has several
    (``workers()``). A failing batch is retried ``retries`` times with
    exponential backoff.

    With ``world_size > 1`` every rank must call this with the same prompts
    after the same cache state (a barrier before): the batch plan is the same
    on every rank, rank ``r`` generates batches ``r, r + world_size, ...`` into
    the shared cache folder, and after ``barrier()`` every rank reads the
    others' shards. No rank generates another's rows.
    """
    stats = GenerationStats()
    unique = list(dict.fromkeys(prompts))
    stats.requested = len(unique)
    keys = [prompt_key(p) for p in unique]
    pending = [i for i, k in enumerate(keys) if k not in cache]
    stats.cached = len(unique) - len(pending)
    if stats.cached and rank == 0:
        LOG.info(f"reusing {stats.cached} cached generations from {cache.dir}")
    if pending:
        lengths = backend.prompt_lengths([unique[i] for i in pending])
        batches = [[pending[j] for j in b]
                   for b in plan_batches(lengths, backend.batch_size, backend.budget_extra_tokens())]
        mine = batches[rank::world_size]
        # asking for the workers loads their models: not for a rank that has no batch
        workers = backend.workers() if mine else [backend]
        if len(workers) > 1:
            LOG.info(f"generating on {len(workers)} model copies at once")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            desc = "mipo: generating" + (f" (rank {rank}/{world_size})" if world_size > 1 else "")
            bar = tqdm(total=sum(len(b) for b in mine), desc=desc, unit="resp")
        start = time.perf_counter()
        try:
            for batch, results in _run_batches(workers, mine, unique, retries, backoff_s, stats, cache):
                cache.add_many((keys[i], r.text, r.num_tokens) for i, r in zip(batch, results))
                for r in results:
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
    if world_size > 1:
        if barrier is None:
            raise ValueError("world_size > 1 needs a barrier")
        barrier()
        cache.reload()
    out: dict[str, GenerationResult] = {}
    for p, k in zip(unique, keys):
        hit = cache.get(k)
        if hit is None:
            raise MIPOGenerationError(f"no response in {cache.dir} for a prompt after generation; "
                                      "with several ranks the cache folder must be on a shared filesystem")
        out[p] = GenerationResult(hit.text, hit.num_tokens)
    LOG.info(stats.summary() + (f" [rank {rank}/{world_size}]" if world_size > 1 else ""))
    return out, stats
