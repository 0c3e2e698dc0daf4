"""Answer accuracy on rows that carry a gold answer (GSM8K-, SVAMP-, ARC-like reasoning rows).

MIPO's reasoning result (arXiv 2603.19294) is measured by whether the model's
final answer is right. For every row whose ``Example.meta`` holds a gold
answer (:data:`~axolotl_mipo.data.example.GOLD_KEYS`: ``gold_answer`` and
``gold_kind``, ``"number"`` or ``"choice"``), :func:`evaluate_accuracy`
generates an answer to the row's prompt twice, greedily and sampled at the
config's temperature (the ``hf`` backend and its
:class:`~axolotl_mipo.generation.sampling.SamplingSettings`, so a sample does
not depend on its batch and the same seed gives the same answers), and
scores each with :func:`~axolotl_mipo.evaluation.answers.extract_answer`.
The gold answer is read from ``meta`` only to score: it is never rendered
into a prompt.

Figures, per decoding mode ``m`` (``greedy`` or ``sampled``):

* ``answer_accuracy_<m>``: share of rows answered correctly; a response with
  no answer in it counts as wrong. ``_ci_low`` / ``_ci_high``: Wilson 95%
  interval.
* ``answer_unparseable_<m>``: share of rows with no answer at all, kept apart
  so that "the model got worse" and "the model stopped writing ``####``"
  are not confused.

:func:`paired_difference` compares two models on the same rows: the mean
per-row difference of correctness (adapter minus base, which equals the
difference of accuracies) with Newcombe's hybrid score interval for paired
proportions (Newcombe 1998, Statistics in Medicine 17:2635, method 10:
each model's Wilson interval, combined with the phi correlation of the
paired outcomes, with his correction of phi when it is positive). Why this and not a
bootstrap: it is closed form (no resampling seed, so a report is
reproducible to the digit), keeps within [-1, 1], and stays informative when
there are few discordant rows, where a percentile bootstrap of a handful
of nonzero differences collapses to a point (``[0, 0]`` when the two models
agree on every row). Newcombe found its coverage close to nominal down to
small samples. The pre-registered experiments, which pool seeds, use the
hierarchical bootstrap of :mod:`axolotl_mipo.evaluation.stats` on the
per-row outcomes that :func:`evaluate_accuracy` also returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from axolotl_mipo.data.example import GOLD_ANSWER_KEY, GOLD_KIND_KEY, Example
from axolotl_mipo.data.prompts import PromptFormat, build_messages
from axolotl_mipo.evaluation.answers import extract_answer, gold_matches, normalize_gold
from axolotl_mipo.evaluation.metrics import wilson_interval

__all__ = ["MODES", "AnswerScores", "accuracy_figures", "evaluate_accuracy", "gold_rows", "paired_difference",
           "paired_figures", "score_answers"]

MODES = ("greedy", "sampled")
_Z95 = 1.959963984540054


def gold_rows(examples: Sequence[Example]) -> list[Example]:
    """The rows whose ``meta`` carries a gold answer (and its kind)."""
    return [ex for ex in examples if ex.meta.get(GOLD_ANSWER_KEY) is not None and ex.meta.get(GOLD_KIND_KEY)]


@dataclass
class AnswerScores:
    """One model's scored answers in one decoding mode, row by row (same order as the rows)."""

    rows: list[int]
    answers: list[str | None]
    correct: list[bool]
    responses: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "answers": self.answers, "correct": self.correct}


def score_answers(responses: Sequence[str], examples: Sequence[Example]) -> AnswerScores:
    """Extract and score each response against its row's gold answer.

    Raises ``ValueError`` naming the row when a gold answer is not a valid answer of its kind.
    """
    if len(responses) != len(examples):
        raise ValueError(f"{len(responses)} responses for {len(examples)} rows; score one response per row")
    answers, correct = [], []
    for text, ex in zip(responses, examples):
        kind = ex.meta[GOLD_KIND_KEY]
        try:
            gold = normalize_gold(ex.meta[GOLD_ANSWER_KEY], kind)
        except ValueError as e:
            raise ValueError(f"row {ex.index}{f' in {ex.source!r}' if ex.source else ''}: field "
                             f"{GOLD_ANSWER_KEY!r}: {e}") from None
        got = extract_answer(text, kind)
        answers.append(got)
        correct.append(gold_matches(got, gold))
    return AnswerScores(rows=[ex.index for ex in examples], answers=answers, correct=correct,
                        responses=list(responses))


def accuracy_figures(scores: AnswerScores, mode: str) -> dict[str, float]:
    """``answer_accuracy_<mode>`` with its Wilson interval, ``answer_unparseable_<mode>`` and ``answer_rows``."""
    n = len(scores.correct)
    k = sum(scores.correct)
    lo, hi = wilson_interval(k, n)
    return {
        f"answer_accuracy_{mode}": k / n if n else float("nan"),
        f"answer_accuracy_{mode}_ci_low": lo,
        f"answer_accuracy_{mode}_ci_high": hi,
        f"answer_unparseable_{mode}": sum(a is None for a in scores.answers) / n if n else float("nan"),
        "answer_rows": float(n),
    }


def paired_difference(adapter: Sequence[bool], base: Sequence[bool], z: float = _Z95) -> dict[str, float]:
    """Mean per-row ``adapter - base`` of correctness, with Newcombe's hybrid score interval (method 10).

    Returns ``diff``, ``ci_low``, ``ci_high``, ``n`` and the discordant counts
    ``adapter_only`` (rows only the adapter got right) and ``base_only``.
    """
    if len(adapter) != len(base):
        raise ValueError(f"paired outcomes need the same rows: {len(adapter)} vs {len(base)}")
    n = len(adapter)
    if n == 0:
        return {"diff": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0.0,
                "adapter_only": 0.0, "base_only": 0.0}
    a = sum(1 for x, y in zip(adapter, base) if x and y)
    b = sum(1 for x, y in zip(adapter, base) if x and not y)
    c = sum(1 for x, y in zip(adapter, base) if y and not x)
    d = n - a - b - c
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, z)
    l2, u2 = wilson_interval(a + c, n, z)
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    # Newcombe's correction: a positive association is shrunk by n/2 (and never below 0)
    num = max(cross - n / 2, 0.0) if cross > 0 else float(cross)
    phi = num / math.sqrt(denom) if denom > 0 else 0.0
    diff = p1 - p2
    lower = diff - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = diff + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return {"diff": diff, "ci_low": max(-1.0, lower), "ci_high": min(1.0, upper), "n": float(n),
            "adapter_only": float(b), "base_only": float(c)}


def paired_figures(adapter: dict[str, AnswerScores], base: dict[str, AnswerScores]) -> dict[str, dict[str, float]]:
    """:func:`paired_difference` per decoding mode, for the rows both models answered (matched by row)."""
    out = {}
    for mode in MODES:
        if mode not in adapter or mode not in base:
            continue
        if adapter[mode].rows != base[mode].rows:
            raise ValueError("the adapter and the base were scored on different rows; evaluate the same rows")
        out[mode] = paired_difference(adapter[mode].correct, base[mode].correct)
    return out


def _hf_generate(model, tokenizer, prompts: Sequence[str], sampling, batch_size: int, progress: bool) -> list[str]:
    from axolotl_mipo.evaluation.evaluate import generate_batched
    from axolotl_mipo.generation.hf import HFBackend

    backend = HFBackend(model, tokenizer, model_id={}, sampling=sampling, batch_size=batch_size)
    return [r.text for r in generate_batched(backend, model, prompts, batch_size, "mipo eval: answering", progress)]


def evaluate_accuracy(model, tokenizer, examples: Sequence[Example], *, sampling, fmt: PromptFormat | None = None,
                      batch_size: int = 16, progress: bool = True, modes: Sequence[str] = MODES,
                      generate: Callable[..., list[str]] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Answer accuracy of one model on the rows with a gold answer: ``(figures, per-mode AnswerScores)``.

    Args:
        model, tokenizer: the model to evaluate (base, or base with the adapter merged) and its tokenizer.
        examples: rows; those without a gold answer are left out (``ValueError`` if none has one).
        sampling: the :class:`~axolotl_mipo.generation.sampling.SamplingSettings` of the sampled mode
            (the config's ``mipo.generation`` with the evaluation's seed and length); the greedy mode uses
            the same settings with sampling off.
        fmt: the prompt format (a context, when a row has one, enters as in training).
        modes: ``greedy``, ``sampled`` or both.
        generate: ``(model, tokenizer, prompts, sampling, batch_size, progress) -> texts``; default the
            ``hf`` backend (tests pass a stand-in).
    """
    import dataclasses

    from axolotl_mipo.pipeline.builder import neutralize_examples, render_prompt

    rows = gold_rows(examples)
    if not rows:
        raise ValueError("no row carries a gold answer; set mipo.datasets[].answer_field and answer_kind "
                         "(format prompt) or use a reasoning preset")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown decoding mode {unknown[0]!r}; use {', '.join(MODES)}")
    rows, _ = neutralize_examples(rows, tokenizer)
    prompts = [render_prompt(tokenizer, build_messages(ex.messages, ex.context, fmt or PromptFormat()))
               for ex in rows]
    gen = generate or _hf_generate
    figures: dict[str, float] = {}
    scores: dict[str, AnswerScores] = {}
    for mode in modes:
        settings = sampling if mode == "sampled" else dataclasses.replace(sampling, do_sample=False)
        texts = gen(model, tokenizer, prompts, settings, batch_size, progress)
        scores[mode] = score_answers(texts, rows)
        figures.update(accuracy_figures(scores[mode], mode))
    return figures, scores


def merge_into_run(run, figures: dict[str, float], scores: dict[str, AnswerScores],
                   paired: dict[str, dict[str, float]] | None = None) -> None:
    """Add a model's accuracy figures (and, for the adapter, the paired differences against the base) to
    an :class:`~axolotl_mipo.evaluation.report.EvalRun`: figures for the summary table, per-row outcomes
    under ``extra["answer_accuracy"]`` for ``report.json``."""
    run.figures.update(figures)
    extra = run.extra.setdefault("answer_accuracy", {})
    extra.update({mode: s.to_dict() for mode, s in scores.items()})
    for mode, d in (paired or {}).items():
        run.figures[f"answer_accuracy_{mode}_paired_diff"] = d["diff"]
        run.figures[f"answer_accuracy_{mode}_paired_ci_low"] = d["ci_low"]
        run.figures[f"answer_accuracy_{mode}_paired_ci_high"] = d["ci_high"]
        extra.setdefault("paired", {})[mode] = {**d, "interval": "Newcombe hybrid score (method 10), 95%"}
