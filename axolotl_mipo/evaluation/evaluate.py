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
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from axolotl_mipo.data.example import Example
from axolotl_mipo.data.prompts import PromptFormat, build_messages
from axolotl_mipo.evaluation import metrics as M
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


# --------------------------------------------------------------------- judge

JUDGE_TEMPLATE = (
    "You are grading how well a response fits one user.\n"
    "User profile: {context}\n"
    "User question: {query}\n"
    "Response: {response}\n\n"
    "On a scale of 1 (ignores the user's preferences) to 5 (follows every stated preference), "
    "how well does the response follow this user's preferences? Answer with one digit.\nScore:"
)
_SCORE = re.compile(r"[1-5]")


def parse_score(text: str) -> float | None:
    """The first digit 1-5 in a judge's answer, or ``None`` when there is none."""
    m = _SCORE.search(text or "")
    return float(m.group(0)) if m else None


class LLMJudge:
    """Scores ``(context, query, response)`` 1-5 with a generation backend (e.g. ``OpenAIBackend``).

    The MIPO paper has a judge score each stated preference 1-5; here one score
    is asked for all preferences together. ``chat_tokenizer`` (optional): the
    judge model's tokenizer, whose chat template renders the question; without
    it the question is sent as plain text ending in ``Score:``. Answers without
    a digit 1-5 are ``None`` (counted as invalid, never as a tie).
    """

    def __init__(self, backend, chat_tokenizer=None, template: str = JUDGE_TEMPLATE):
        self.backend = backend
        self.chat_tokenizer = chat_tokenizer
        self.template = template

    def _render(self, context: str, query: str, response: str) -> str:
        text = self.template.format(context=context, query=query, response=response)
        tok = self.chat_tokenizer
        if tok is not None and getattr(tok, "chat_template", None):
            return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)
        return text

    def score(self, items: Sequence[tuple[str, str, str]]) -> list[float | None]:
        prompts = [self._render(c, q, r) for c, q, r in items]
        out: list[float | None] = []
        size = max(1, int(getattr(self.backend, "batch_size", 8)))
        for i in range(0, len(prompts), size):
            out.extend(parse_score(r.text) for r in self.backend.generate_batch(prompts[i:i + size]))
        return out


def _judge_scores(judge, items):
    if hasattr(judge, "score"):
        return list(judge.score(items))
    return [judge(*it) for it in items]


def run_judge(judge, examples: Sequence[Example], responses: Sequence[str], tol: float = 0.0) -> dict:
    """Win / tie / loss of each response against its row's reference, by judge score."""
    rows = [(ex, r) for ex, r in zip(examples, responses) if ex.meta.get("reference") is not None]
    if not rows:
        return {"n": 0, "invalid": 0, "note": "no reference responses: the judge needs them"}
    def query(ex):
        return "\n".join(c for role, c in ex.messages if role == "user")

    model_items = [(ex.context or "", query(ex), r) for ex, r in rows]
    ref_items = [(ex.context or "", query(ex), ex.meta["reference"]) for ex, _ in rows]
    scores = _judge_scores(judge, model_items + ref_items)
    mine, refs = scores[: len(rows)], scores[len(rows):]
    outcomes, invalid = [], 0
    for a, b in zip(mine, refs):
        if a is None or b is None or not (math.isfinite(float(a)) and math.isfinite(float(b))):
            invalid += 1
            continue
        outcomes.append(M.judge_outcome(a, b, tol=tol))
    tally = M.judge_tally(outcomes).to_dict()
    tally["invalid"] = invalid
    valid_mine = [float(a) for a in mine if a is not None]
    tally["mean_score"] = sum(valid_mine) / len(valid_mine) if valid_mine else float("nan")
    return tally


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
    from axolotl_mipo.generation.base import plan_batches
    from axolotl_mipo.generation.hf import HFBackend
    from axolotl_mipo.pipeline.builder import neutralize, render_prompt, special_token_strings

    backend = HFBackend(model, tokenizer, model_id={}, max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, top_k=top_k, do_sample=temperature > 0, batch_size=batch_size, seed=seed)
    prompts = [render_prompt(tokenizer, build_messages(ex.messages, ex.context, fmt)) for ex in examples]
    specials = special_token_strings(tokenizer)
    out: list[tuple[str, int] | None] = [None] * len(prompts)
    bar = _bar(len(prompts), "mipo eval: generating", progress)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for batch in plan_batches(backend.prompt_lengths(prompts), batch_size):
            for i, r in zip(batch, backend.generate_batch([prompts[i] for i in batch])):
                out[i] = (neutralize(r.text, specials), r.num_tokens)
            if bar is not None:
                bar.update(len(batch))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return out  # type: ignore[return-value]


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


def _score_candidates(model, tokenizer, examples, responses, cands, fmt, batch_size, progress, desc):
    rows: list[list[float]] = []
    step = max(1, (4 * batch_size) // max(1, len(cands[0]) if cands else 1))
    bar = _bar(len(examples), desc, progress)
    for sl in _chunks(len(examples), step):
        rows += context_score_matrix(model, tokenizer, examples[sl], responses[sl], cands[sl], fmt,
                                     batch_size=batch_size)
        if bar is not None:
            bar.update(sl.stop - sl.start)
    if bar is not None:
        bar.close()
    return rows


def _conditional(model, tokenizer, examples, responses, fmt, batch_size, progress, desc):
    with_c, without = [], []
    bar = _bar(len(examples), desc, progress)
    step = 4 * batch_size
    for sl in _chunks(len(examples), step):
        a, b = conditional_logprobs(model, tokenizer, examples[sl], responses[sl], fmt, batch_size=batch_size)
        with_c += a
        without += b
        if bar is not None:
            bar.update(sl.stop - sl.start)
    if bar is not None:
        bar.close()
    return with_c, without


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
        judge: an :class:`LLMJudge`, any object with ``score(items) -> list[float | None]``
            or a callable ``(context, query, response) -> float | None``.
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
    from axolotl_mipo.pipeline.builder import neutralize_examples

    examples = list(examples)[: n_generate] if n_generate else list(examples)
    if not examples:
        raise ValueError("no rows to evaluate")
    missing = [ex.index for ex in examples if not ex.context]
    if missing:
        raise ValueError(f"rows {missing[:5]} have no user context; personalization needs one per row")
    examples, _ = neutralize_examples(examples, tokenizer)
    fmt = fmt or PromptFormat()
    notes: list[str] = []

    generated = generate_responses(model, tokenizer, examples, fmt=fmt, max_new_tokens=max_new_tokens,
                                   temperature=temperature, top_p=top_p, top_k=top_k, seed=seed,
                                   batch_size=batch_size, progress=progress)
    responses = [t for t, _ in generated]
    truncated = sum(n >= max_new_tokens for _, n in generated)

    figures: dict[str, float] = {}
    with_c, without = _conditional(model, tokenizer, examples, responses, fmt, batch_size, progress,
                                   "mipo eval: MI (generated)")
    mi = M.pointwise_mi(with_c, without)
    figures.update(mi_mean=mi.mean, mi_sem=mi.sem, mi_std=mi.std,
                   mi_per_token=mi.per_token_mean if mi.per_token_mean is not None else float("nan"),
                   logp_with_context=sum(a for a, _ in with_c) / len(with_c),
                   logp_without_context=sum(b for b, _ in without) / len(without))

    refs = [ex.meta.get("reference") for ex in examples]
    has_refs = all(r is not None for r in refs)
    if any(r is not None for r in refs) and not has_refs:
        notes.append(f"{sum(r is None for r in refs)} of {len(refs)} rows have no reference; "
                     "reference figures are left out")
    ref_mi = None
    if has_refs:
        rw, ro = _conditional(model, tokenizer, examples, refs, fmt, batch_size, progress,
                              "mipo eval: MI (references)")
        ref_mi = M.pointwise_mi(rw, ro)
        figures.update(ref_mi_mean=ref_mi.mean, ref_mi_per_token=ref_mi.per_token_mean
                       if ref_mi.per_token_mean is not None else float("nan"))
        figures["rouge_l"] = M.mean_rouge_l(responses, refs)
        figures["meteor"] = M.mean_meteor(responses, refs)

    contexts = [ex.context for ex in examples]
    n_ctx = len(set(contexts))
    ks = sorted({int(k) for k in k_values})
    if any(k < 2 for k in ks):
        raise ValueError("K must be >= 2 (K=1 is always right)")
    usable = [k for k in ks if k <= n_ctx]
    if len(usable) < len(ks):
        notes.append(f"K={[k for k in ks if k > n_ctx]} skipped: only {n_ctx} distinct contexts in the rows")
    accuracy: dict[int, float] = {}
    ident: dict[str, Any] = {}
    identified: dict[int, list[bool]] = {}  # per row, for intervals over rows (e.g. a bootstrap)
    if usable:
        cands, truth, cols = _nested_candidates(contexts, usable, seed)
        scores = _score_candidates(model, tokenizer, examples, responses, cands, fmt, batch_size, progress,
                                   f"mipo eval: context identification (K<={max(usable)})")
        for k, res in _identification(scores, truth, cols).items():
            accuracy[k] = res.accuracy
            figures[f"accuracy_frac@K{k}"] = res.accuracy_fractional
            ident[f"K{k}"] = {kk: v for kk, v in res.to_dict().items() if kk != "identified"}
            identified[k] = list(res.identified)
        if has_refs and identify_references:
            rscores = _score_candidates(model, tokenizer, examples, refs, cands, fmt, batch_size, progress,
                                        "mipo eval: context identification (references)")
            for k, res in _identification(rscores, truth, cols).items():
                figures[f"ref_accuracy@K{k}"] = res.accuracy

    if len(responses) >= 2:
        figures["self_bleu"] = M.self_bleu(responses, max_samples=500, seed=seed)
    figures["distinct_2"] = M.distinct_n(responses, 2)
    figures["response_tokens"] = sum(n for _, n in generated) / len(generated)
    figures["empty_share"] = sum(not r.strip() for r in responses) / len(responses)
    figures["truncated_share"] = truncated / len(responses)

    extra: dict[str, Any] = {"identification": ident, "identified_per_row": identified,
                             "n_rows": len(examples), "n_contexts": n_ctx,
                             "generation": {"max_new_tokens": max_new_tokens, "temperature": temperature,
                                            "top_p": top_p, "top_k": top_k, "seed": seed}}
    if ref_mi is not None:
        extra["ref_mi_per_row"] = ref_mi.per_row
    if checker is not None:
        for name, value in checker(responses, examples).items():
            figures[f"pref_{name}"] = float(value)
    if judge is not None:
        tally = run_judge(judge, examples, responses, tol=judge_tol)
        extra["judge"] = tally
        for key in ("wins", "ties", "losses", "invalid", "win_rate", "tie_rate", "loss_rate", "mean_score"):
            if key in tally:
                figures[f"judge_{key}"] = float(tally[key])
    if any(ex.human_pair is not None for ex in examples):
        pair_scores = score_human_pairs(model, tokenizer, examples, fmt, batch_size=batch_size)
        pfig, pdet = preference_figures(pair_scores, reference_scores)
        figures.update(pfig)
        extra["preference_accuracy"] = pdet
        extra["pair_scores"] = pair_scores
    if notes:
        extra["notes"] = notes
        for n in notes:
            LOG.warning(f"mipo eval: {n}")
    extra["samples"] = [{"context": ex.context, "query": "\n".join(c for _, c in ex.messages), "response": r}
                        for ex, r in list(zip(examples, responses))[:5]]
    return EvalResult(figures=figures, mi_per_row=mi.per_row, accuracy_per_k=accuracy, responses=responses,
                      extra=extra)


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
