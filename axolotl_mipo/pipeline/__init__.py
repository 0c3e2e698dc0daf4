"""The whole data side in one call: rows -> split -> generation -> pairing -> DPO rows.

The stages live here: :mod:`~axolotl_mipo.pipeline.builder` (generation and
pairing into TRL's preference rows), :mod:`~axolotl_mipo.pipeline.summary`
(POPI-style preference summaries, before pairing) and :func:`build_rows`,
which runs them from a config. They read input from :mod:`axolotl_mipo.data`
and use :mod:`axolotl_mipo.generation`, :mod:`axolotl_mipo.pairing` and
:mod:`axolotl_mipo.scoring`, never a higher layer.

Used by the plugin's ``load_datasets`` hook and by ``axolotl-mipo generate``.
Under ``torchrun`` / ``accelerate launch`` with several processes the ``hf``
and ``openai`` backends split the generation batches across ranks (each rank
writes its own shards into the shared cache folder); ``vllm`` parallelises
inside one process (tensor parallel), so there rank 0 generates and the other
ranks read its cache. In one process the ``hf`` backend loads a model copy per
visible GPU (``generation.devices``) and runs batches on them at once.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from typing import Any

from axolotl_mipo.data.prompts import PromptFormat
from axolotl_mipo.data.rows import load_examples
from axolotl_mipo.generation import backend_from_config
from axolotl_mipo.generation.base import release_frames
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.generation.distributed import dist_info
from axolotl_mipo.generation.handoff import check_handoff, cuda_allocated
from axolotl_mipo.pairing import build_strategy
from axolotl_mipo.pipeline.builder import BuildStats, build_preference_rows
from axolotl_mipo.pipeline.summary import (
    DEFAULT_TEMPLATE,
    mi_summary_vs_history,
    summarize_contexts,
    write_summary_report,
)

LOG = logging.getLogger(__name__)
DEFAULT_PREPARED_PATH = "last_run_prepared"


def cache_root(cfg, mipo_cfg) -> str:
    root = mipo_cfg.cache_dir or os.path.join(cfg.get("dataset_prepared_path") or DEFAULT_PREPARED_PATH,
                                              "mipo_cache")
    return os.path.abspath(root)


def build_rows(cfg, mipo_cfg, tokenizer, *, progress: bool = True) -> tuple[list[dict], BuildStats]:
    """Validated input -> cached generation -> pairs. Fails on bad input before loading any model."""
    examples = load_examples(mipo_cfg.datasets, on_bad_row=mipo_cfg.on_bad_row, dedupe=mipo_cfg.dedupe_rows)
    strategy = build_strategy(mipo_cfg.strategy, mipo_cfg.strategy_kwargs)  # a name, or a weighted list
    strategy.validate(examples)
    LOG.info(f"mipo: {len(examples)} rows, pairing strategy {strategy.name!r}"
             + (f" {strategy!r}" if strategy.name == "mixture" else ""))

    state = dist_info()
    world, rank = state.world_size, state.rank
    sharded = world > 1 and mipo_cfg.generation.backend != "vllm"
    run = _Run(cfg, mipo_cfg, tokenizer, examples, strategy, PromptFormat.from_config(mipo_cfg), rank,
               show_progress=progress and (sharded or rank == 0))

    if mipo_cfg.regenerate:
        if state.is_main:
            clear_cache(cfg, mipo_cfg, tokenizer)
        state.barrier()
    retry = {"retries": mipo_cfg.generation.max_retries, "backoff_s": mipo_cfg.generation.retry_backoff_s}
    if sharded:
        state.barrier()  # every rank must see the same cache before planning
        return _with_backend(cfg, mipo_cfg, tokenizer,
                             partial(run, gen_kwargs={**retry, "rank": rank, "world_size": world,
                                                      "barrier": state.barrier}))
    with state.main_first():
        return _with_backend(cfg, mipo_cfg, tokenizer, partial(run, gen_kwargs=retry))


def _with_backend(cfg, mipo_cfg, tokenizer, work: Callable):
    """``work(backend)`` with the configured generation backend, closed afterwards whatever happens, then a
    check that its GPU memory was returned (before training needs it)."""
    baseline = cuda_allocated()
    backend = backend_from_config(cfg, mipo_cfg, tokenizer)
    try:
        return work(backend)
    except BaseException as exc:
        release_frames(exc)  # its traceback would keep the model alive after close()
        raise
    finally:
        backend.close()
        del backend  # the last reference: the memory check below must not see the model
        try:
            check_handoff(baseline)
        except Exception as exc:  # a report; never mask generation's own error
            LOG.warning(f"mipo: could not check the GPU memory after generation ({type(exc).__name__}: {exc})")


@dataclass(frozen=True)
class _Run:
    """One build's generation and pairing with a backend: (summaries ->) responses -> pairs."""

    cfg: Any
    mipo_cfg: Any
    tokenizer: Any
    examples: list
    strategy: Any
    fmt: PromptFormat
    rank: int
    show_progress: bool

    def __call__(self, backend, *, gen_kwargs: dict) -> tuple[list[dict], BuildStats]:
        m = self.mipo_cfg
        cache = GenerationCache(cache_root(self.cfg, m), backend.cache_key_parts())
        rows_in, report = self.examples, None
        if m.context_builder == "preference_summary":
            rows_in, report = self._summarize(backend, gen_kwargs)
        built = build_preference_rows(
            rows_in, self.strategy, backend, cache, self.tokenizer,
            fmt=self.fmt,
            seed=m.seed,
            max_prompt_tokens=self.max_prompt_tokens,
            progress=self.show_progress,
            gen_kwargs=gen_kwargs,
            long_prompt=m.long_prompt or ("skip" if m.on_bad_row == "skip" else "raise"),
        )
        if report is not None:
            mi_summary_vs_history(rows_in, backend, cache, self.tokenizer, self.fmt, report,
                                  rows=m.summary.report_rows, seed=m.seed, gen_kwargs=gen_kwargs)
            LOG.info(report.summary())
            if self.rank == 0:
                LOG.info(f"preference_summary: report written to {write_summary_report(report, cache.dir)}")
        return built

    @property
    def max_prompt_tokens(self):
        return self.mipo_cfg.generation.max_prompt_tokens or self.cfg.get("sequence_len")

    def _summarize(self, backend, gen_kwargs: dict):
        """POPI-style summaries in place of the contexts, written by the generation backend or by the
        summarizer's own model, which is closed before the responses are generated."""
        m = self.mipo_cfg
        summarize = partial(
            summarize_contexts, self.examples, cache_root=cache_root(self.cfg, m), tokenizer=self.tokenizer,
            max_new_tokens=m.summary.max_new_tokens, max_words=m.summary.max_words,
            template=m.summary.template or DEFAULT_TEMPLATE, max_prompt_tokens=self.max_prompt_tokens,
            progress=self.show_progress, gen_kwargs=gen_kwargs,
        )
        if not m.summary.summarizer:
            return summarize(backend=backend)
        from axolotl_mipo.generation.summarizer import summarizer_backend

        with closing(summarizer_backend(self.cfg, m, self.tokenizer)) as writer:
            return summarize(backend=writer)


def clear_cache(cfg, mipo_cfg, tokenizer) -> None:
    """Delete this model/settings' cache folder (``mipo.regenerate``)."""
    from axolotl_mipo.generation.cache import stable_hash

    backend = backend_from_config(cfg, mipo_cfg, tokenizer)
    try:
        folder = os.path.join(cache_root(cfg, mipo_cfg), stable_hash(backend.cache_key_parts()))
    finally:
        backend.close()
    if os.path.isdir(folder):
        shutil.rmtree(folder)
        LOG.info(f"mipo.regenerate: cleared {folder}")
