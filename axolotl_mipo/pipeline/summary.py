"""POPI-style preference summaries: a long user history becomes a short context the model wrote.

POPI (arXiv 2510.17881; code github YizhuoChen99/POPI) trains a summarizer
with RL to distil a user's history into a short natural-language preference
summary; here the base model writes it zero-shot, and the summary is measured
by the pointwise MI that MIPO (arXiv 2603.19294) maximises.

``mipo.context_builder: preference_summary`` sits between the context/query
split and generation: each distinct context (the user's history, from the
dataset's ``context_field``) is turned by the model itself into a short
natural-language summary of the user's preferences, and that summary is the
context every pairing strategy then uses. Summaries are generated through the
same backend as the responses and cached the same way (resumable, keyed by the
model, the settings and this prompt template), in their own cache folder.

It reports what the summary buys and what it costs:

* the context-length reduction (tokens of the histories vs the summaries);
* with the ``hf`` backend and ``summary.report_rows > 0``, the pointwise MI of
  responses generated with the summary as context vs with the full history,
  ``mean_i [log p(y_i | c_i, x_i) - log p(y_i | x_i)]`` per token, on a seeded
  sample of rows. The summary-conditioned responses are the chosen ones of
  the run (cached, so they cost nothing extra); the history-conditioned ones are
  generated for the sample only.

A summary that comes back empty would leave a row without a context, so the
row keeps its full history instead (counted and logged).
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from axolotl_mipo.data.example import Example
from axolotl_mipo.data.prompts import build_messages
from axolotl_mipo.errors import MIPOConfigError
from axolotl_mipo.generation.base import generate_with_cache
from axolotl_mipo.generation.cache import GenerationCache
from axolotl_mipo.pipeline.builder import render_prompt
from axolotl_mipo.scoring import conditional_logprobs, pointwise_mi

LOG = logging.getLogger(__name__)

CACHE_PURPOSE = "preference_summary-v1"

DEFAULT_TEMPLATE = (
    "Here is what a user wrote and did before:\n\n{history}\n\n"
    "Summarize this user's preferences (interests, constraints, preferred style, tone and format of answers) "
    "in at most {max_words} words. Write only the summary, in the third person, and include nothing the "
    "history does not support."
)


@dataclass
class SummaryReport:
    contexts: int = 0
    history_tokens_mean: float = 0.0
    summary_tokens_mean: float = 0.0
    reduction: float = 0.0  # history tokens / summary tokens
    truncated_histories: int = 0
    empty_summaries: int = 0
    mi_rows: int = 0
    mi_summary: float | None = None  # per-token pointwise MI of summary-conditioned responses
    mi_history: float | None = None  # the same for responses conditioned on the full history

    def summary(self) -> str:
        line = (f"preference_summary: {self.contexts} contexts, {self.history_tokens_mean:.0f} -> "
                f"{self.summary_tokens_mean:.0f} tokens on average (history/summary length {self.reduction:.2f}x)")
        if self.truncated_histories:
            line += f", {self.truncated_histories} histories cut to their most recent part to fit the prompt"
        if self.empty_summaries:
            line += f", {self.empty_summaries} empty summaries (those rows keep their full history)"
        if self.mi_summary is not None:
            line += (f"; per-token MI of responses on {self.mi_rows} rows: {self.mi_summary:.3f} with the summary "
                     f"vs {self.mi_history:.3f} with the full history")
        return line


def summary_prompt(tokenizer, history: str, template: str, max_words: int) -> str:
    return render_prompt(tokenizer, [{"role": "user", "content": template.format(history=history,
                                                                                 max_words=max_words)}])


def _fit_history(tokenizer, history: str, ids: list[int], template: str, max_words: int, limit: int | None,
                 overhead: int) -> tuple[str, bool]:
    """The history (token ``ids``), cut from the front (the most recent part is kept) so that its prompt fits
    ``limit``; ``overhead`` is the prompt's length with an empty history."""
    if not limit:
        return history, False
    room = limit - overhead
    if len(ids) <= room:
        return history, False
    if room <= 0:
        raise MIPOConfigError(
            f"mipo.summary.template alone is {overhead} tokens, more than the {limit} a prompt may have; "
            "shorten the template or raise sequence_len"
        )
    while True:  # decoding a cut and encoding it again can merge tokens differently: check, cut more if needed
        text = tokenizer.decode(ids[len(ids) - room:], skip_special_tokens=True)
        total = len(tokenizer(summary_prompt(tokenizer, text, template, max_words),
                              add_special_tokens=False)["input_ids"])
        if total <= limit or room <= 1:
            return text, True
        room -= total - limit


def summarize_contexts(
    examples: Sequence[Example],
    backend,
    cache_root: str,
    tokenizer,
    *,
    max_new_tokens: int = 128,
    max_words: int = 60,
    template: str = DEFAULT_TEMPLATE,
    max_prompt_tokens: int | None = None,
    progress: bool = True,
    gen_kwargs: dict | None = None,
) -> tuple[list[Example], SummaryReport]:
    """Each example with its context replaced by the model's summary of it, and the report (no MI yet).

    The original history stays in ``example.meta["history"]``.
    """
    if any(ex.context is None for ex in examples):
        raise MIPOConfigError("mipo.context_builder preference_summary needs a user context (history) per row; "
                              "a dataset has format 'prompt'")
    histories = list(dict.fromkeys(ex.context for ex in examples))
    report = SummaryReport(contexts=len(histories))
    def n_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    history_ids = {h: tokenizer(h, add_special_tokens=False)["input_ids"] for h in histories}
    overhead = n_tokens(summary_prompt(tokenizer, "", template, max_words)) if max_prompt_tokens else 0
    prompts = {}
    for h in histories:
        fitted, cut = _fit_history(tokenizer, h, history_ids[h], template, max_words, max_prompt_tokens, overhead)
        report.truncated_histories += int(cut)
        prompts[h] = summary_prompt(tokenizer, fitted, template, max_words)

    saved = backend.max_new_tokens
    backend.max_new_tokens = max_new_tokens  # every backend reads it per batch
    try:
        key = {**backend.cache_key_parts(), "purpose": CACHE_PURPOSE, "template": template, "max_words": max_words}
        cache = GenerationCache(cache_root, key)
        LOG.info(f"preference_summary: summarizing {len(histories)} distinct contexts")
        results, _ = generate_with_cache(backend, list(prompts.values()), cache, progress=progress,
                                         **(gen_kwargs or {}))
    finally:
        backend.max_new_tokens = saved

    summaries = {}
    for h in histories:
        text = results[prompts[h]].text.strip()
        if not text:
            report.empty_summaries += 1
            text = h
        summaries[h] = text

    h_tok = [len(history_ids[h]) for h in histories]
    s_tok = [n_tokens(summaries[h]) for h in histories]
    report.history_tokens_mean = sum(h_tok) / max(len(h_tok), 1)
    report.summary_tokens_mean = sum(s_tok) / max(len(s_tok), 1)
    report.reduction = report.history_tokens_mean / max(report.summary_tokens_mean, 1e-9)
    out = [replace(ex, context=summaries[ex.context], meta={**ex.meta, "history": ex.context}) for ex in examples]
    return out, report


def mi_summary_vs_history(
    summarized: Sequence[Example],
    backend,
    cache,
    tokenizer,
    fmt,
    report: SummaryReport,
    *,
    rows: int,
    seed: int,
    gen_kwargs: dict | None = None,
) -> SummaryReport:
    """Fill ``report.mi_*``: per-token pointwise MI of responses generated with the summary vs the history.

    ``cache`` is the run's response cache (the summary-conditioned responses are
    the chosen ones of drop_context-style strategies, so usually cached). Needs
    a backend with a local model to score with (``hf``); others are skipped.
    """
    model = getattr(backend, "model", None)
    if rows <= 0 or model is None or not hasattr(model, "forward"):
        if rows > 0:
            LOG.info("preference_summary: the MI comparison needs the hf backend (a local model to score with); "
                     "skipped")
        return report
    pool = list(summarized)
    sample = random.Random(seed).sample(pool, min(rows, len(pool)))
    with_history = [replace(ex, context=ex.meta["history"]) for ex in sample]

    def responses(exs):
        prompts = [render_prompt(tokenizer, build_messages(ex.messages, ex.context, fmt)) for ex in exs]
        got, _ = generate_with_cache(backend, prompts, cache, progress=False, **(gen_kwargs or {}))
        return [got[p].text for p in prompts]

    mi = {}
    for name, exs in (("summary", sample), ("history", with_history)):
        ys = responses(exs)
        lw, lo = conditional_logprobs(model, tokenizer, exs, responses=ys, fmt=fmt,
                                      batch_size=getattr(backend, "batch_size", 8))
        mi[name] = pointwise_mi(lw, lo).per_token_mean
    report.mi_rows = len(sample)
    report.mi_summary, report.mi_history = mi["summary"], mi["history"]
    return report


def write_summary_report(report: SummaryReport, folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "preference_summary_report.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(asdict(report), f, indent=2)
    return path
