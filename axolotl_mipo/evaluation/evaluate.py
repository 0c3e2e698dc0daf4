"""Evaluate one model on held-out rows: does it use the user's context?

:func:`evaluate_model` runs the whole measurement for one (model, tokenizer):

1. **Generate** a response ``y_i`` to each row WITH its user context, through
   :class:`~axolotl_mipo.generation.hf.HFBackend` (one seeded generator per
   prompt, so a response does not depend on the batch it landed in, and the
   same seed gives the same responses).
2. **Pointwise conditional MI** of those responses,
   ``log p(y|x,c) - log p(y|x)`` per row (:mod:`~axolotl_mipo.scoring`
   scores exactly the tokens DPO trains on), and of the reference responses
   when the rows have them.
3. **Context identification** for every K in ``k_values``: is the row's own
   context the most likely of K candidate contexts for its generated response?
   Chance is 1/K. The strict figure (a tie at the top is a miss) is the
   headline; the tie-splitting one is reported beside it.
4. **Text figures**: ROUGE-L and METEOR against references (when present),
   self-BLEU and distinct-2 over the generated responses (diversity), mean
   response length, share of empty responses.
5. Optional **preference checker** (the synthetic task's) and optional **LLM
   judge** (model response vs reference, wins / ties / losses kept apart).
6. **Preference accuracy** on the rows that carry the user's own human pair
   (the dataset presets): how often the model ranks the chosen response above
   the rejected one, by ``log p(y+|x,c) - log p(y-|x,c)`` with the context and
   ``log p(y+|x) - log p(y-|x)`` without it; for an adapter, given the base
   model's scores, also by DPO's implicit reward against the base (POPI's
   headline metric, arXiv 2510.17881). Strict (a tie is a miss), with a Wilson
   95% interval and the count of pairs; also per token (length-normalized).

Choices, documented because they change numbers:

* Sampling defaults to temperature 1, top-p 1: then ``y ~ p(.|x, c)`` and the
  mean pointwise MI is an unbiased estimate of the model's conditional mutual
  information ``I(Y; C | X)``. At MIPO's generation temperature (0.1) the mean
  measures the mode's context dependence instead; pass ``temperature=0.1`` to
  get that figure.
* Candidate contexts are the distinct contexts of the evaluated rows. The K
  sets are NESTED: the scores of the largest K are computed once (K_max
  forwards per row, not sum(K)), and each smaller K keeps the own context plus
  a seeded uniform draw of K-1 of the others. Each K's set is still a uniform
  random choice of distractors; curves across K use shared distractors, so
  they are smoother than independent draws would be.
* User text and generated text are passed through the builder's special-token
  neutralization, as in training.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from axolotl_mipo.data.example import Example
from axolotl_mipo.data.prompts import PromptFormat, build_messages
from axolotl_mipo.evaluation import metrics as M
from axolotl_mipo.evaluation.judge import run_judge
from axolotl_mipo.evaluation.report import EvalRun
from axolotl_mipo.scoring import conditional_logprobs, context_score_matrix

LOG = logging.getLogger(__name__)

DEFAULT_K = (2, 4, 8)


@dataclass
class EvalResult:
    """Figures of one evaluated model; ``to_run`` turns it into a report entry."""

    figures: dict[str, float]
    mi_per_row: list[float]
    accuracy_per_k: dict[int, float]
    responses: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_run(self, label: str, seed: int | None = None, **extra) -> EvalRun:
        return EvalRun(label=label, seed=seed, figures=dict(self.figures), mi_per_row=list(self.mi_per_row),
                       accuracy_per_k=dict(self.accuracy_per_k), extra={**self.extra, **extra})


# ------------------------------------------------------------------- helpers


def _chunks(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", leave=False)


def generate_responses(model, tokenizer, examples: Sequence[Example], *, fmt: PromptFormat | None = None,
                       max_new_tokens: int = 128, temperature: float = 1.0, top_p: float = 1.0,
                       top_k: int | None = None, seed: int = 0, batch_size: int = 16,
                       progress: bool = True) -> list[tuple[str, int]]:
    """``(text, n_tokens)`` per example, generated WITH its context; batch-invariant per-row sampling."""
    from axolotl_mipo.generation.hf import HFBackend
    from axolotl_mipo.pipeline.builder import neutralize, render_prompt, special_token_strings

    backend = HFBackend(model, tokenizer, model_id={}, max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, top_k=top_k, do_sample=temperature > 0, batch_size=batch_size, seed=seed)
    prompts = [render_prompt(tokenizer, build_messages(ex.messages, ex.context, fmt)) for ex in examples]
    specials = special_token_strings(tokenizer)
    results = generate_batched(backend, model, prompts, batch_size, "mipo eval: generating", progress)
    return [(neutralize(r.text, specials), r.num_tokens) for r in results]


def generate_batched(backend, model, prompts: Sequence[str], batch_size: int, desc: str, progress: bool) -> list:
    """``backend.generate_batch`` over ``prompts`` in length-planned batches, in eval mode (restored after), with
    a progress bar; the results in the prompts' order. Shared by every figure of ``eval`` that generates."""
    from axolotl_mipo.generation.base import plan_batches

    prompts = list(prompts)
    out: list = [None] * len(prompts)
    bar = _bar(len(prompts), desc, progress)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for batch in plan_batches(backend.prompt_lengths(prompts), batch_size):
            for i, r in zip(batch, backend.generate_batch([prompts[i] for i in batch])):
                out[i] = r
            if bar is not None:
                bar.update(len(batch))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return out


def _nested_candidates(contexts: Sequence[str], k_values: Sequence[int], seed: int):
    """Candidate sets of the largest K, and for each K the columns that form its (nested) set."""
    kmax = max(k_values)
    cands, truth = M.build_candidate_sets(contexts, kmax, seed=seed)
    rng = random.Random(f"{seed}-nested")
    cols: dict[int, list[list[int]]] = {k: [] for k in sorted(k_values)}
    for t in truth:
        # one seeded order of the distractors per row; K keeps the first K-1, so the sets are nested
        others = [c for c in range(kmax) if c != t]
        rng.shuffle(others)
        for k in cols:
            cols[k].append(sorted(others[: k - 1] + [t]))
    return cands, truth, cols


def _identification(score_rows, truth, cols) -> dict[int, M.IdentificationResult]:
    out = {}
    for k, per_row in cols.items():
        sub = [[row[c] for c in keep] for row, keep in zip(score_rows, per_row)]
        true_col = [keep.index(t) for keep, t in zip(per_row, truth)]
        out[k] = M.context_identification_accuracy(sub, true_col)
    return out


# ------------------------------------------------------ preference accuracy

PAIR_KEYS = ("chosen_ctx", "rejected_ctx", "chosen_noctx", "rejected_noctx")


def score_human_pairs(model, tokenizer, examples: Sequence[Example], fmt: PromptFormat | None = None, *,
                      batch_size: int = 16, logprobs: Callable | None = None) -> dict[str, Any]:
    """Log-probabilities of each row's human pair, with and without the user's context.

    Returns ``{"rows": [row index...], key: [(sum log p, n tokens)...]}`` for
    ``PAIR_KEYS``, over the rows that have a pair (in order). ``logprobs``:
    ``(model, tokenizer, prompts, responses, batch_size) -> [(sum, n)]``,
    :func:`~axolotl_mipo.scoring.response_logprobs` by default.
    """
    from axolotl_mipo.scoring import response_logprobs

    fmt = fmt or PromptFormat()
    score = logprobs or response_logprobs
    rows = [ex for ex in examples if ex.human_pair is not None]
    out: dict[str, Any] = {"rows": [ex.index for ex in rows]}
    if not rows:
        return {**out, **{k: [] for k in PAIR_KEYS}}
    with_c = [build_messages(ex.messages, ex.context, fmt) for ex in rows]
    without = [build_messages(ex.messages, None, fmt) for ex in rows]
    chosen = [ex.human_pair[0] for ex in rows]
    rejected = [ex.human_pair[1] for ex in rows]
    # one call: the scorer sorts by length across all four sets, so batches are fuller
    flat = score(model, tokenizer, with_c * 2 + without * 2, chosen + rejected + chosen + rejected, batch_size)
    n = len(rows)
    for i, key in enumerate(PAIR_KEYS):
        out[key] = [tuple(x) for x in flat[i * n:(i + 1) * n]]
    return out


def preference_figures(scores: Mapping[str, Any], reference: Mapping[str, Any] | None = None) -> tuple[
        dict[str, float], dict[str, Any]]:
    """Figures (and per-setting details) of preference accuracy from :func:`score_human_pairs` output.

    ``reference``: the base model's scores of the same pairs; with it the
    adapter is also ranked by DPO's implicit reward against the base.
    """
    figures: dict[str, float] = {"pref_pairs": float(len(scores["rows"]))}
    details: dict[str, Any] = {}
    if not scores["rows"]:
        return figures, details
    if reference is not None and list(reference["rows"]) != list(scores["rows"]):
        raise ValueError("the reference scores cover other rows than the model's; score the same examples")

    def total(key, src=scores):
        return [s for s, _ in src[key]]

    def per_token(key, src=scores):
        return [s / max(1, n) for s, n in src[key]]

    settings = {
        "with_context": M.logp_margins(total("chosen_ctx"), total("rejected_ctx")),
        "without_context": M.logp_margins(total("chosen_noctx"), total("rejected_noctx")),
        "per_token_with_context": M.logp_margins(per_token("chosen_ctx"), per_token("rejected_ctx")),
        "per_token_without_context": M.logp_margins(per_token("chosen_noctx"), per_token("rejected_noctx")),
    }
    if reference is not None:
        for where, sfx in (("with_context", "ctx"), ("without_context", "noctx")):
            settings[f"implicit_{where}"] = M.implicit_reward_margins(
                total(f"chosen_{sfx}"), total(f"rejected_{sfx}"),
                total(f"chosen_{sfx}", reference), total(f"rejected_{sfx}", reference))
    for name, margins in settings.items():
        acc = M.preference_accuracy(margins)
        details[name] = acc.to_dict()
        figures[f"pref_accuracy_{name}"] = acc.accuracy
        if not name.startswith("per_token"):
            figures[f"pref_accuracy_{name}_ci_low"] = acc.ci_low
            figures[f"pref_accuracy_{name}_ci_high"] = acc.ci_high
            figures[f"pref_margin_{name}"] = acc.mean_margin
    return figures, details


def evaluate_preferences(model, tokenizer, examples: Sequence[Example], *, fmt: PromptFormat | None = None,
                         batch_size: int = 16, reference_scores: Mapping[str, Any] | None = None,
                         logprobs: Callable | None = None) -> EvalResult:
    """Preference accuracy only (no generation): scores every row's human pair once."""
    from axolotl_mipo.pipeline.builder import neutralize_examples

    examples, _ = neutralize_examples(list(examples), tokenizer)
    scores = score_human_pairs(model, tokenizer, examples, fmt, batch_size=batch_size, logprobs=logprobs)
    if not scores["rows"]:
        raise ValueError("no row has a human pair (chosen/rejected); preference accuracy needs a dataset preset "
                         "that carries them (alignx, prism, community_alignment)")
    figures, details = preference_figures(scores, reference_scores)
    return EvalResult(figures=figures, mi_per_row=[], accuracy_per_k={}, responses=[],
                      extra={"preference_accuracy": details, "pair_scores": scores, "n_rows": len(examples)})


# ---------------------------------------------------------------- the entry


def evaluate_model(
    model,
    tokenizer,
    examples: Sequence[Example],
    *,
    k_values: Sequence[int] = DEFAULT_K,
    n_generate: int | None = None,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    fmt: PromptFormat | None = None,
    judge: Any = None,
    judge_tol: float = 0.0,
    checker: Callable[[Sequence[str], Sequence[Example]], Mapping[str, float]] | None = None,
    identify_references: bool = True,
    progress: bool = True,
    reference_scores: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Every figure for one model on ``examples`` (held-out rows with a user context each).

    Args:
        model: a causal LM (the merged adapter, or the base model).
        tokenizer: its tokenizer, with the chat template the model was trained with.
        examples: held-out rows, each with a user context.
        k_values: numbers of candidate contexts for identification; a K larger
            than the number of distinct contexts is skipped with a note.
        n_generate: evaluate only the first N rows (``None``: all).
        max_new_tokens: length limit of the generated responses.
        temperature: sampling temperature (0: greedy).
        top_p: nucleus sampling threshold.
        top_k: top-k sampling (``None``: off).
        seed: the sampling seed (per-prompt seeds derive from it).
        batch_size: rows per generation and scoring batch.
        fmt: where and how the context enters the prompt (default: a system message).
        judge: an :class:`~axolotl_mipo.evaluation.judge.LLMJudge`, any object with
            ``score(items) -> list[float | None]`` or a callable ``(context, query, response) -> float | None``.
        judge_tol: score difference under which the judge's verdict is a tie.
        checker: ``(responses, examples) -> {name: value}``, added to the
            figures as ``pref_<name>`` (e.g. the synthetic task's preference
            satisfaction, :func:`~axolotl_mipo.evaluation.synthetic.synthetic_checker`).
        identify_references: also score the reference responses (``ref_*`` figures).
        progress: show progress bars.

    Returns:
        An :class:`EvalResult`.

    Figures (all in nats where log-probs are involved): ``mi_mean`` /
    ``mi_per_token`` / ``mi_sem`` of generated responses; ``ref_mi_mean`` /
    ``ref_mi_per_token`` of references; ``accuracy@K<k>`` (strict) and
    ``accuracy_frac@K<k>`` (ties split) for generated responses,
    ``ref_accuracy@K<k>`` for references; ``rouge_l``, ``meteor``,
    ``self_bleu``, ``distinct_2``, ``response_tokens``, ``empty_share``;
    ``judge_*`` when a judge is given; ``pref_accuracy_*`` / ``pref_margin_*`` /
    ``pref_pairs`` when rows carry a human pair (``reference_scores``: the base
    model's ``extra["pair_scores"]``, for the adapter's implicit-reward accuracy).
    """
    examples = _rows_to_evaluate(examples, tokenizer, n_generate)
    fmt = fmt or PromptFormat()
    score = _Scorer(model, tokenizer, fmt, batch_size, progress)
    notes: list[str] = []

    generated = generate_responses(model, tokenizer, examples, fmt=fmt, max_new_tokens=max_new_tokens,
                                   temperature=temperature, top_p=top_p, top_k=top_k, seed=seed,
                                   batch_size=batch_size, progress=progress)
    responses = [t for t, _ in generated]

    mi, figures = _mi_figures(score, examples, responses)
    refs, ref_mi, ref_figures = _reference_figures(score, examples, responses, notes)
    figures.update(ref_figures)
    ident, id_figures = _identification_figures(score, examples, responses, refs if identify_references else None,
                                                k_values, seed, notes)
    figures.update(id_figures)
    figures.update(_text_figures(responses, generated, max_new_tokens, seed))

    extra: dict[str, Any] = {"identification": ident["summary"], "identified_per_row": ident["per_row"],
                             "n_rows": len(examples), "n_contexts": ident["n_contexts"],
                             "generation": {"max_new_tokens": max_new_tokens, "temperature": temperature,
                                            "top_p": top_p, "top_k": top_k, "seed": seed}}
    if ref_mi is not None:
        extra["ref_mi_per_row"] = ref_mi.per_row
    if checker is not None:
        figures.update({f"pref_{name}": float(value) for name, value in checker(responses, examples).items()})
    if judge is not None:
        extra["judge"], judge_figures = _judge_figures(judge, examples, responses, judge_tol)
        figures.update(judge_figures)
    if any(ex.human_pair is not None for ex in examples):
        pair_scores = score_human_pairs(model, tokenizer, examples, fmt, batch_size=batch_size)
        pfig, extra["preference_accuracy"] = preference_figures(pair_scores, reference_scores)
        figures.update(pfig)
        extra["pair_scores"] = pair_scores
    if notes:
        extra["notes"] = notes
        for n in notes:
            LOG.warning(f"mipo eval: {n}")
    extra["samples"] = [{"context": ex.context, "query": "\n".join(c for _, c in ex.messages), "response": r}
                        for ex, r in list(zip(examples, responses))[:5]]
    return EvalResult(figures=figures, mi_per_row=mi.per_row, accuracy_per_k=ident["accuracy"],
                      responses=responses, extra=extra)


# ---------------------------------------------------------- evaluate_model's steps


def _rows_to_evaluate(examples: Sequence[Example], tokenizer, n_generate: int | None) -> list[Example]:
    """The first ``n_generate`` rows, each with a context, their text neutralized as in training."""
    from axolotl_mipo.pipeline.builder import neutralize_examples

    examples = list(examples)[: n_generate] if n_generate else list(examples)
    if not examples:
        raise ValueError("no rows to evaluate")
    missing = [ex.index for ex in examples if not ex.context]
    if missing:
        raise ValueError(f"rows {missing[:5]} have no user context; personalization needs one per row")
    return neutralize_examples(examples, tokenizer)[0]


@dataclass(frozen=True)
class _Scorer:
    """One model's scoring of responses, in chunks of rows, with a progress bar."""

    model: Any
    tokenizer: Any
    fmt: PromptFormat
    batch_size: int
    progress: bool

    def _chunked(self, n: int, step: int, desc: str, score_slice) -> None:
        bar = _bar(n, desc, self.progress)
        for sl in _chunks(n, step):
            score_slice(sl)
            if bar is not None:
                bar.update(sl.stop - sl.start)
        if bar is not None:
            bar.close()

    def conditional(self, examples, responses, desc: str) -> tuple[list, list]:
        """``log p(y|x,c)`` and ``log p(y|x)`` of each row's response, as ``(sum, n tokens)``."""
        with_c, without = [], []

        def one(sl):
            a, b = conditional_logprobs(self.model, self.tokenizer, examples[sl], responses[sl], self.fmt,
                                        batch_size=self.batch_size)
            with_c.extend(a)
            without.extend(b)

        self._chunked(len(examples), 4 * self.batch_size, desc, one)
        return with_c, without

    def candidates(self, examples, responses, cands, desc: str) -> list[list[float]]:
        """Each row's response scored under each of its candidate contexts."""
        rows: list[list[float]] = []

        def one(sl):
            rows.extend(context_score_matrix(self.model, self.tokenizer, examples[sl], responses[sl], cands[sl],
                                             self.fmt, batch_size=self.batch_size))

        step = max(1, (4 * self.batch_size) // max(1, len(cands[0]) if cands else 1))
        self._chunked(len(examples), step, desc, one)
        return rows


def _mi_figures(score: _Scorer, examples, responses) -> tuple[M.MIResult, dict[str, float]]:
    with_c, without = score.conditional(examples, responses, "mipo eval: MI (generated)")
    mi = M.pointwise_mi(with_c, without)
    return mi, dict(mi_mean=mi.mean, mi_sem=mi.sem, mi_std=mi.std,
                    mi_per_token=mi.per_token_mean if mi.per_token_mean is not None else float("nan"),
                    logp_with_context=sum(a for a, _ in with_c) / len(with_c),
                    logp_without_context=sum(b for b, _ in without) / len(without))


def _reference_figures(score: _Scorer, examples, responses, notes: list[str]):
    """``(refs or None, their pointwise MI or None, figures)``: only when every row has a reference."""
    refs = [ex.meta.get("reference") for ex in examples]
    if not all(r is not None for r in refs):
        if any(r is not None for r in refs):
            notes.append(f"{sum(r is None for r in refs)} of {len(refs)} rows have no reference; "
                         "reference figures are left out")
        return None, None, {}
    ref_mi = M.pointwise_mi(*score.conditional(examples, refs, "mipo eval: MI (references)"))
    return refs, ref_mi, {
        "ref_mi_mean": ref_mi.mean,
        "ref_mi_per_token": ref_mi.per_token_mean if ref_mi.per_token_mean is not None else float("nan"),
        "rouge_l": M.mean_rouge_l(responses, refs), "meteor": M.mean_meteor(responses, refs),
    }


def _identification_figures(score: _Scorer, examples, responses, refs, k_values, seed, notes: list[str]):
    """Context identification at each usable K, of the responses (and of ``refs`` when given)."""
    contexts = [ex.context for ex in examples]
    n_ctx = len(set(contexts))
    ks = sorted({int(k) for k in k_values})
    if any(k < 2 for k in ks):
        raise ValueError("K must be >= 2 (K=1 is always right)")
    usable = [k for k in ks if k <= n_ctx]
    if len(usable) < len(ks):
        notes.append(f"K={[k for k in ks if k > n_ctx]} skipped: only {n_ctx} distinct contexts in the rows")
    # identified: per row, for intervals over rows (e.g. a bootstrap)
    out: dict[str, Any] = {"accuracy": {}, "summary": {}, "per_row": {}, "n_contexts": n_ctx}
    figures: dict[str, float] = {}
    if not usable:
        return out, figures
    cands, truth, cols = _nested_candidates(contexts, usable, seed)
    scores = score.candidates(examples, responses, cands, f"mipo eval: context identification (K<={max(usable)})")
    for k, res in _identification(scores, truth, cols).items():
        out["accuracy"][k] = res.accuracy
        figures[f"accuracy_frac@K{k}"] = res.accuracy_fractional
        out["summary"][f"K{k}"] = {kk: v for kk, v in res.to_dict().items() if kk != "identified"}
        out["per_row"][k] = list(res.identified)
    if refs is not None:
        rscores = score.candidates(examples, refs, cands, "mipo eval: context identification (references)")
        for k, res in _identification(rscores, truth, cols).items():
            figures[f"ref_accuracy@K{k}"] = res.accuracy
    return out, figures


def _text_figures(responses: list[str], generated, max_new_tokens: int, seed: int) -> dict[str, float]:
    figures = {}
    if len(responses) >= 2:
        figures["self_bleu"] = M.self_bleu(responses, max_samples=500, seed=seed)
    figures["distinct_2"] = M.distinct_n(responses, 2)
    figures["response_tokens"] = sum(n for _, n in generated) / len(generated)
    figures["empty_share"] = sum(not r.strip() for r in responses) / len(responses)
    figures["truncated_share"] = sum(n >= max_new_tokens for _, n in generated) / len(responses)
    return figures


def _judge_figures(judge, examples, responses, tol: float) -> tuple[dict, dict[str, float]]:
    tally = run_judge(judge, examples, responses, tol=tol)
    keys = ("wins", "ties", "losses", "invalid", "win_rate", "tie_rate", "loss_rate", "mean_score")
    return tally, {f"judge_{k}": float(tally[k]) for k in keys if k in tally}


# ----------------------------------------------------------------- loading


def load_model(base: str, adapter: str | None = None, *, device: str | None = None, dtype: str = "auto",
               trust_remote_code: bool = False):
    """A base model, with a PEFT adapter merged in when given (merging changes no output)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype),
                                                 trust_remote_code=trust_remote_code)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.to(device)
    model.eval()
    return model
