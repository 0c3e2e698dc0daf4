"""Personalization and text metrics: pure functions on numbers and strings.

No model, no downloads. The model-facing half (log-probabilities) is in
:mod:`axolotl_mipo.scoring` (with the pointwise MI, re-exported here); everything
here takes its outputs (or plain texts) and is exact enough to test on hand-made cases.

Tokenization for the text metrics (:func:`tokenize`) follows the ``rouge_score``
package's default: lowercase, every run of non-alphanumeric characters is a
separator, so ``"Hello, world!"`` and ``"hello world"`` are the same two
tokens. Unicode letters and digits count as alphanumeric (``rouge_score`` keeps
ASCII only, which erases non-English text).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# The pointwise MI lives with the scoring it summarises (a lower layer, which the pipeline's
# preference-summary report uses too); re-exported here, and its NaN-safe mean reused below.
from axolotl_mipo.scoring import MIResult as MIResult
from axolotl_mipo.scoring import mean_or_nan as _mean
from axolotl_mipo.scoring import pointwise_mi as pointwise_mi

_TOKEN = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


# ------------------------------------------------------- context identification


def build_candidate_sets(
    contexts: Sequence[str], k: int, seed: int = 0
) -> tuple[list[list[str]], list[int]]:
    """K candidate contexts per row: the row's own context and K-1 distinct others.

    Others are drawn without replacement from the distinct context strings of
    the whole list (never equal to the row's own text, so two users who wrote the
    same context cannot be confused with each other), and the own context is put
    at a random column so that no downstream tie-breaking by position can favour
    it. Deterministic under ``seed``. Returns ``(candidates, true_column)``.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    pool = list(dict.fromkeys(contexts))
    if k > len(pool):
        raise ValueError(f"k={k} candidates need at least {k} distinct contexts; the data has {len(pool)}")
    rng = random.Random(seed)
    cands, truth = [], []
    for own in contexts:
        others = rng.sample([c for c in pool if c != own], k - 1) if k > 1 else []
        col = rng.randrange(k)
        others.insert(col, own)
        cands.append(others)
        truth.append(col)
    return cands, truth


@dataclass
class IdentificationResult:
    """Context identification: is the true context the most likely of K candidates?

    ``accuracy`` is the conservative figure: a row counts only when its true
    context scores STRICTLY higher than every other candidate; a tie at the top
    is not identified. It is a lower bound, and a model that ignores the context
    (every candidate scores the same) gets 0, not chance.
    ``accuracy_fractional`` gives a row tied at the top with ``t`` candidates
    credit ``1/t``: the expected accuracy under random tie-breaking, which is
    exactly ``chance = 1/K`` for a context-blind model. Report the strict one;
    the fractional one says how much of the gap is ties.
    """

    accuracy: float
    accuracy_fractional: float
    chance: float
    k: int
    n: int
    ties_at_top: int
    identified: list[bool] = field(repr=False)

    def to_dict(self) -> dict:
        return asdict(self)


def context_identification_accuracy(scores, true_col: int | Sequence[int] = 0) -> IdentificationResult:
    """Accuracy of picking each row's true context out of K candidates by score.

    ``scores`` is an ``[n_rows, K]`` matrix (nested lists or an array) of
    ``log p(y_i | x_i, c_k)``; ``true_col`` is the column of the true context,
    one int for all rows or one per row. Ties: see :class:`IdentificationResult`.
    """
    rows = [[float(v) for v in r] for r in scores]
    if not rows:
        raise ValueError("no rows to score")
    k = len(rows[0])
    if k < 1 or any(len(r) != k for r in rows):
        raise ValueError("every row needs the same number (>= 1) of candidate scores")
    cols = [int(true_col)] * len(rows) if isinstance(true_col, int) else [int(c) for c in true_col]
    if len(cols) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(cols)} true columns")
    identified, frac, ties = [], 0.0, 0
    for r, c in zip(rows, cols):
        if not 0 <= c < k:
            raise ValueError(f"true column {c} out of range for K={k}")
        if any(math.isnan(v) for v in r):
            raise ValueError("scores contain NaN")
        top = max(r)
        n_top = sum(v == top for v in r)
        hit = r[c] == top
        identified.append(hit and n_top == 1)
        frac += (1.0 / n_top) if hit else 0.0
        ties += n_top > 1
    n = len(rows)
    return IdentificationResult(
        accuracy=sum(identified) / n,
        accuracy_fractional=frac / n,
        chance=1.0 / k,
        k=k,
        n=n,
        ties_at_top=ties,
        identified=identified,
    )


# ------------------------------------------------------------------ ROUGE-L


def _lcs_len(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, reference: str, beta: float = 1.0) -> float:
    """ROUGE-L F-measure (longest common subsequence) of two texts.

    ``beta=1`` is the F1 that ``rouge_score`` reports as ``rougeL``. Empty on
    either side gives 0, as in ``rouge_score``. Sentence splitting (``rougeLsum``)
    is not done: the whole text is one sequence.
    """
    c, r = tokenize(candidate), tokenize(reference)
    if not c or not r:
        return 0.0
    lcs = _lcs_len(c, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(c), lcs / len(r)
    b2 = beta * beta
    return (1 + b2) * p * rec / (rec + b2 * p)


def mean_rouge_l(candidates: Sequence[str], references: Sequence[str]) -> float:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
    return _mean([rouge_l(c, r) for c, r in zip(candidates, references)])


# ------------------------------------------------------------------- METEOR

try:  # the Porter stemmer is pure code, no NLTK data download
    from nltk.stem.porter import PorterStemmer as _PorterStemmer

    _STEMMER = _PorterStemmer()
    STEMMER_AVAILABLE = True
except Exception:  # any import problem just disables stemming
    _STEMMER = None
    STEMMER_AVAILABLE = False


def _align(hyp: list[str], ref: list[str], key, pairs: list[tuple[int, int]]) -> None:
    # NLTK's order (``_match_enums``): hypothesis words right to left, each taking the
    # LAST still-unmatched reference word with the same key, so scores equal NLTK's
    h_used = {h for h, _ in pairs}
    r_free = [j for j in range(len(ref)) if j not in {r for _, r in pairs}]
    r_keys = {j: key(ref[j]) for j in r_free}
    for i in reversed(range(len(hyp))):
        if i in h_used:
            continue
        k = key(hyp[i])
        for pos in reversed(range(len(r_free))):
            j = r_free[pos]
            if r_keys[j] == k:
                pairs.append((i, j))
                del r_free[pos]
                break


def meteor(
    candidate: str,
    reference: str,
    alpha: float = 0.9,
    beta: float = 3.0,
    gamma: float = 0.5,
    stem: bool | None = None,
) -> float:
    """METEOR (Banerjee & Lavie 2005, NLTK's parameters) of a candidate against one reference.

    Unigrams are aligned in stages: exact (lowercased) matches first, then
    Porter-stem matches among the words left (``stem=None``: when NLTK's
    ``PorterStemmer`` is importable; it needs no data). WordNet synonym matching
    is NOT done (it would need a corpus download), so scores are at most, and
    usually close to, NLTK's ``meteor_score`` (which ``evaluate``'s METEOR
    calls); with synonyms switched off they are equal, because the alignment
    replicates NLTK's (greedy, last-match-first). The paper's aligner minimises
    crossings instead, which can give fewer chunks on texts with repeated words.

    ``score = Fmean * (1 - gamma * (chunks / matches) ** beta)`` with
    ``Fmean = P R / (alpha P + (1 - alpha) R)``. Identical texts of n words
    score ``1 - 0.5 / n**3``; no shared word scores 0.
    """
    h, r = tokenize(candidate), tokenize(reference)
    if not h or not r:
        return 0.0
    pairs: list[tuple[int, int]] = []
    _align(h, r, lambda w: w, pairs)
    use_stem = STEMMER_AVAILABLE if stem is None else stem
    if use_stem:
        if not STEMMER_AVAILABLE:
            raise RuntimeError("stem=True needs nltk (pip install nltk); no data download is needed")
        _align(h, r, _STEMMER.stem, pairs)
    m = len(pairs)
    if m == 0:
        return 0.0
    p, rec = m / len(h), m / len(r)
    fmean = p * rec / (alpha * p + (1 - alpha) * rec)
    pairs.sort()
    chunks = 1
    for (h0, r0), (h1, r1) in zip(pairs, pairs[1:]):
        if not (h1 == h0 + 1 and r1 == r0 + 1):
            chunks += 1
    penalty = gamma * (chunks / m) ** beta
    return fmean * (1 - penalty)


def mean_meteor(candidates: Sequence[str], references: Sequence[str], **kwargs) -> float:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
    return _mean([meteor(c, r, **kwargs) for c, r in zip(candidates, references)])


# ---------------------------------------------------------------- diversity


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def self_bleu(texts: Sequence[str], max_n: int = 4, max_samples: int | None = None, seed: int = 0) -> float:
    """Mean BLEU-``max_n`` of each text against all the others as references (Zhu et al. 2018, Texygen).

    Higher means less diverse: identical generations score 1, generations with
    no shared word score 0. Details, since self-BLEU figures are only comparable
    under the same ones:

    * uniform weights over 1..max_n-grams, counts clipped by the maximum count
      in any single other text (standard multi-reference BLEU);
    * smoothing: add-one on the n-gram precisions for n >= 2 (Lin & Och 2004;
      NLTK's ``method2`` also smooths unigrams), so short texts and rare 4-gram
      matches do not zero a sentence; unigram precision is not smoothed, so
      texts with no shared word score 0;
    * brevity penalty against the closest other text's length;
    * ``max_samples`` scores a seeded subset of texts as hypotheses (all texts
      stay references) to bound the cost.

    An empty text scores 0 as a hypothesis. Needs at least two texts.
    """
    toks = [tokenize(t) for t in texts]
    if len(toks) < 2:
        raise ValueError("self-BLEU needs at least two texts")
    grams = [[_ngrams(t, n) for n in range(1, max_n + 1)] for t in toks]
    # top two counts per n-gram over all texts: the clip for text i is the best count among the others
    top: list[dict] = [dict() for _ in range(max_n)]
    for i, per_n in enumerate(grams):
        for n_idx, cnt in enumerate(per_n):
            table = top[n_idx]
            for g, c in cnt.items():
                best = table.get(g)
                if best is None:
                    table[g] = [c, i, 0]
                elif c > best[0]:
                    table[g] = [c, i, best[0]]
                elif c > best[2]:
                    best[2] = c
    lengths = [len(t) for t in toks]
    hyps = list(range(len(toks)))
    if max_samples is not None and max_samples < len(hyps):
        hyps = sorted(random.Random(seed).sample(hyps, max_samples))
    scores = []
    for i in hyps:
        if not toks[i]:
            scores.append(0.0)
            continue
        log_p = 0.0
        zero = False
        for n_idx in range(max_n):
            cnt = grams[i][n_idx]
            total = sum(cnt.values())
            matched = 0
            for g, c in cnt.items():
                best = top[n_idx][g]
                other = best[2] if best[1] == i else best[0]
                matched += min(c, other)
            if n_idx == 0:
                if matched == 0:
                    zero = True
                    break
                log_p += math.log(matched / total)
            else:
                log_p += math.log((matched + 1) / (total + 1))
        if zero:
            scores.append(0.0)
            continue
        hyp_len = lengths[i]
        ref_len = min((abs(lengths[j] - hyp_len), lengths[j]) for j in range(len(toks)) if j != i)[1]
        bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
        scores.append(bp * math.exp(log_p / max_n))
    return _mean(scores)


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams across the texts (Li et al. 2016); 1 = no repetition."""
    total, seen = 0, set()
    for t in texts:
        grams = _ngrams(tokenize(t), n)
        total += sum(grams.values())
        seen.update(grams)
    return len(seen) / total if total else 0.0


# ------------------------------------------------------ preference satisfaction


def preference_satisfaction(
    responses: Sequence[str], prefs: Sequence, check: Callable[[str, Any], Mapping[str, bool]],
    dimensions: Sequence[str],
) -> dict[str, float]:
    """Share of responses obeying each preference, and ``all`` of them at once.

    ``check(response, prefs)`` says, for one response and its row's preferences,
    whether each of ``dimensions`` is obeyed (a task's own rule checker, e.g. a
    word limit or a language). The figures come in the order of ``dimensions``.
    """
    if len(responses) != len(prefs):
        raise ValueError(f"{len(responses)} responses but {len(prefs)} preference sets")
    if not responses:
        raise ValueError("no responses")
    checks = [check(r, p) for r, p in zip(responses, prefs)]
    out = {d: sum(c[d] for c in checks) / len(checks) for d in dimensions}
    out["all"] = sum(all(c.values()) for c in checks) / len(checks)
    return out


# ------------------------------------------------------------------- judge

_OUTCOMES = {"win": "win", "w": "win", 1: "win", "tie": "tie", "t": "tie", 0: "tie",
             "loss": "loss", "lose": "loss", "l": "loss", -1: "loss"}


@dataclass
class JudgeTally:
    """LLM-judge outcomes of model responses against references, counted apart.

    ``win_rate_ties_as_wins`` is the MIPO paper's figure, which counts a tie
    as a win; it is reported for comparison only and is inflated whenever the
    judge ties often. ``win_rate_ties_half`` is the usual convention.
    """

    wins: int
    ties: int
    losses: int
    n: int
    win_rate: float
    tie_rate: float
    loss_rate: float
    win_rate_ties_half: float
    win_rate_ties_as_wins: float

    def to_dict(self) -> dict:
        return asdict(self)


def judge_outcome(model_score: float, reference_score: float, tol: float = 0.0) -> str:
    """``"win"``/``"tie"``/``"loss"`` from two judge scores (e.g. MIPO's 1-5 per preference, arXiv 2603.19294)."""
    d = float(model_score) - float(reference_score)
    if math.isnan(d):
        raise ValueError("judge score is NaN")
    return "tie" if abs(d) <= tol else ("win" if d > 0 else "loss")


def judge_tally(outcomes: Sequence) -> JudgeTally:
    """Count outcomes given as ``"win"/"tie"/"loss"`` (or ``w/t/l``, ``1/0/-1``)."""
    counts = Counter()
    for o in outcomes:
        key = o.strip().lower() if isinstance(o, str) else o
        if isinstance(key, bool) or key not in _OUTCOMES:
            raise ValueError(f"unknown judge outcome {o!r}; use win/tie/loss")
        counts[_OUTCOMES[key]] += 1
    w, t, lost = counts["win"], counts["tie"], counts["loss"]
    n = w + t + lost
    rate = (lambda x: x / n) if n else (lambda x: float("nan"))
    return JudgeTally(
        wins=w, ties=t, losses=lost, n=n,
        win_rate=rate(w), tie_rate=rate(t), loss_rate=rate(lost),
        win_rate_ties_half=rate(w + 0.5 * t),
        win_rate_ties_as_wins=rate(w + t),
    )


# ------------------------------------------------------- preference accuracy


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default); ``(nan, nan)`` for ``n = 0``.

    Unlike the normal approximation it stays inside [0, 1] and is not empty
    at 0 or n successes, which matters for the small held-out sets of one user.
    """
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0 or n successes the bound is exactly 0 or 1; rounding would leave it a hair inside the point estimate
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high


@dataclass
class PreferenceAccuracy:
    """How often a score ranks the user's chosen response above the rejected one.

    ``accuracy`` is strict: a tie (margin exactly 0) is a miss, so a model that
    cannot tell the two apart scores 0, not 0.5; ``ties`` says how many there were.
    ``ci_low``/``ci_high``: the Wilson 95% interval of ``accuracy`` over ``n`` pairs.
    """

    n: int
    wins: int
    ties: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_margin: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def preference_accuracy(margins: Sequence[float]) -> PreferenceAccuracy:
    """Accuracy of ``margin = score(chosen) - score(rejected)`` per pair (> 0 is a win).

    Pure: usable with any score (log-probability difference, DPO's implicit
    reward, a reward model's output). Non-finite margins are an error, not a miss.
    """
    ms = [float(m) for m in margins]
    bad = [i for i, m in enumerate(ms) if not math.isfinite(m)]
    if bad:
        raise ValueError(f"non-finite preference margins at pairs {bad[:5]}")
    n = len(ms)
    wins = sum(m > 0 for m in ms)
    lo, hi = wilson_interval(wins, n)
    return PreferenceAccuracy(n=n, wins=wins, ties=sum(m == 0 for m in ms),
                              accuracy=wins / n if n else float("nan"), ci_low=lo, ci_high=hi,
                              mean_margin=_mean(ms) if n else float("nan"))


def logp_margins(chosen: Sequence[float], rejected: Sequence[float]) -> list[float]:
    """``log p(chosen) - log p(rejected)`` per pair (the base model's ranking)."""
    if len(chosen) != len(rejected):
        raise ValueError(f"{len(chosen)} chosen but {len(rejected)} rejected scores")
    return [float(c) - float(r) for c, r in zip(chosen, rejected)]


def implicit_reward_margins(policy_chosen: Sequence[float], policy_rejected: Sequence[float],
                            ref_chosen: Sequence[float], ref_rejected: Sequence[float],
                            beta: float = 1.0) -> list[float]:
    """DPO's implicit reward margin per pair (arXiv 2305.18290, eq. 5):
    ``beta * ((log pi(y+) - log ref(y+)) - (log pi(y-) - log ref(y-)))``.

    The sign, hence the accuracy, does not depend on ``beta > 0``; the mean
    margin does (nats times beta).
    """
    if beta <= 0:
        raise ValueError("beta must be > 0")
    n = len(policy_chosen)
    if not (len(policy_rejected) == len(ref_chosen) == len(ref_rejected) == n):
        raise ValueError("policy and reference scores must cover the same pairs")
    return [beta * ((float(pc) - float(rc)) - (float(pr) - float(rr)))
            for pc, pr, rc, rr in zip(policy_chosen, policy_rejected, ref_chosen, ref_rejected)]
