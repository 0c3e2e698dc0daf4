"""Evaluation metrics on cases whose right value is known (MI, identification, ROUGE-L, METEOR, self-BLEU)."""

from __future__ import annotations

import math
import random

import pytest

from axolotl_mipo.evaluation import metrics as M

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)


def test_pointwise_mi_values():
    r = M.pointwise_mi([-1.0, -2.0, -3.0], [-1.0, -2.0, -3.0])
    assert r.mean == 0.0 and r.per_row == [0.0, 0.0, 0.0] and r.std == 0.0
    r = M.pointwise_mi([(-1.0, 2), (-2.0, 4)], [(-3.0, 2), (-2.0, 4)])
    assert r.per_row == [2.0, 0.0] and r.mean == 1.0
    assert r.per_token_mean == pytest.approx((2.0 / 2 + 0.0) / 2)
    with pytest.raises(ValueError):
        M.pointwise_mi([-1.0], [-1.0, -2.0])
    with pytest.raises(ValueError, match="token counts"):
        M.pointwise_mi([(-1.0, 2)], [(-1.0, 3)])
    with pytest.raises(ValueError, match="finite"):
        M.pointwise_mi([float("-inf")], [-1.0])


def test_identification_known_cases():
    perfect = M.context_identification_accuracy([[0.0, -5.0, -5.0], [-9.0, -1.0, -3.0]], [0, 1])
    assert perfect.accuracy == 1.0 and perfect.chance == pytest.approx(1 / 3)
    wrong = M.context_identification_accuracy([[-1.0, 0.0]], 0)
    assert wrong.accuracy == 0.0 and wrong.accuracy_fractional == 0.0


@pytest.mark.parametrize("k", [2, 4, 8])
def test_context_blind_scores_give_chance(k):
    # a model that ignores c gives every candidate the same score: conservatively never
    # identified, and exactly chance under random tie-breaking
    tied = M.context_identification_accuracy([[-3.0] * k] * 50, [i % k for i in range(50)])
    assert tied.accuracy == 0.0
    assert tied.accuracy_fractional == pytest.approx(1 / k)
    assert tied.ties_at_top == 50
    # scores that vary but carry no information about c: chance in expectation
    rng = random.Random(k)
    n = 4000
    noise = [[rng.gauss(0, 1) for _ in range(k)] for _ in range(n)]
    res = M.context_identification_accuracy(noise, [rng.randrange(k) for _ in range(n)])
    se = math.sqrt((1 / k) * (1 - 1 / k) / n)
    assert abs(res.accuracy - 1 / k) < 4 * se
    assert res.accuracy == res.accuracy_fractional  # continuous scores never tie


def test_identification_rejects_bad_input():
    with pytest.raises(ValueError):
        M.context_identification_accuracy([[0.0, 1.0], [0.0]], 0)
    with pytest.raises(ValueError):
        M.context_identification_accuracy([[0.0, 1.0]], 2)
    with pytest.raises(ValueError, match="NaN"):
        M.context_identification_accuracy([[float("nan"), 1.0]], 0)


def test_candidate_sets():
    contexts = [f"ctx {i % 6}" for i in range(20)]
    cands, truth = M.build_candidate_sets(contexts, 4, seed=3)
    assert (cands, truth) == M.build_candidate_sets(contexts, 4, seed=3)
    assert (cands, truth) != M.build_candidate_sets(contexts, 4, seed=4)
    for own, row, col in zip(contexts, cands, truth):
        assert len(row) == 4 and len(set(row)) == 4
        assert row[col] == own and row.count(own) == 1
    assert len(set(truth)) > 1  # the true context is not always in the same column
    with pytest.raises(ValueError, match="distinct"):
        M.build_candidate_sets(contexts, 7)


def test_rouge_l():
    assert M.rouge_l("The cat sat on the mat.", "the cat sat on the mat") == 1.0
    assert M.rouge_l("alpha beta", "gamma delta") == 0.0
    assert M.rouge_l("", "gamma") == 0.0
    # LCS("a b c d", "a c e") = 2 -> P = 2/4, R = 2/3, F1 = 4/7
    assert M.rouge_l("a b c d", "a c e") == pytest.approx(4 / 7)


def test_meteor():
    six = "the cat sat on the mat"
    assert M.meteor(six, six) == pytest.approx(1 - 0.5 / 6 ** 3)
    assert M.meteor(six, six) > 0.99
    assert M.meteor("alpha beta", "gamma delta") == 0.0
    if M.STEMMER_AVAILABLE:
        assert M.meteor("running dogs", "run dog") == pytest.approx(1 - 0.5 / 8)
        assert M.meteor("running dogs", "run dog", stem=False) == 0.0


def test_meteor_equals_nltk_without_synonyms():
    meteor_score = pytest.importorskip("nltk.translate.meteor_score")

    class NoSynonyms:
        def synsets(self, *a, **k):
            return []

    rng = random.Random(0)
    vocab = "the cat sat on mat a dog ran runs running quick fox jumps over lazy dogs cats".split()
    for _ in range(300):
        h = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12)))
        r = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12)))
        ref = meteor_score.meteor_score([M.tokenize(r)], M.tokenize(h), wordnet=NoSynonyms())
        assert M.meteor(h, r) == pytest.approx(ref, abs=1e-12), (h, r)


def test_self_bleu():
    assert M.self_bleu(["the cat sat on the mat"] * 4) == pytest.approx(1.0)
    assert M.self_bleu(["yes"] * 3) == pytest.approx(1.0)
    assert M.self_bleu(["alpha beta gamma", "delta epsilon zeta", "eta theta"]) == 0.0
    # by hand: p1 = 3/4, p2 = 3/4, p3 = 2/3, p4 = 1/2 (add-one for n >= 2), equal lengths so BP = 1
    assert M.self_bleu(["a b c d", "a b c e"]) == pytest.approx((0.75 * 0.75 * (2 / 3) * 0.5) ** 0.25)
    texts = ["a b c d", "a b c e", "x y z", "a b x y"]
    assert M.self_bleu(texts, max_samples=4) == M.self_bleu(texts)
    with pytest.raises(ValueError):
        M.self_bleu(["only one"])
    assert M.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)


def test_judge_tally():
    t = M.judge_tally(["win", "tie", "loss", "win", "W", 0, -1, "tie"])
    assert (t.wins, t.ties, t.losses, t.n) == (3, 3, 2, 8)
    assert t.win_rate == 3 / 8 and t.tie_rate == 3 / 8 and t.loss_rate == 2 / 8
    assert t.win_rate_ties_as_wins == 6 / 8  # MIPO's figure (arXiv 2603.19294 counts ties as wins)
    assert t.win_rate_ties_half == 4.5 / 8
    assert [M.judge_outcome(a, b) for a, b in [(5, 3), (3, 3), (2, 4)]] == ["win", "tie", "loss"]
    assert M.judge_outcome(3.2, 3.0, tol=0.5) == "tie"
    with pytest.raises(ValueError):
        M.judge_tally(["draw"])
    with pytest.raises(ValueError):
        M.judge_tally([True])
    assert math.isnan(M.judge_tally([]).win_rate)


def test_wilson_interval_known_values():
    lo, hi = M.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = M.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert all(math.isnan(x) for x in M.wilson_interval(0, 0))


def test_preference_accuracy_is_strict_and_counts_ties():
    acc = M.preference_accuracy([1.0, -1.0, 0.0, 2.0])
    assert (acc.n, acc.wins, acc.ties, acc.accuracy, acc.mean_margin) == (4, 2, 1, 0.5, 0.5)
    assert acc.ci_low < 0.5 < acc.ci_high
    with pytest.raises(ValueError, match="non-finite"):
        M.preference_accuracy([1.0, float("nan")])


def test_implicit_reward_margin_is_dpo_eq5():
    # policy raised chosen by 2 and rejected by 1 against the reference: margin beta * (2 - 1)
    m = M.implicit_reward_margins([-3.0], [-4.0], [-5.0], [-5.0], beta=0.1)
    assert m == [pytest.approx(0.1)]
    assert M.implicit_reward_margins([-1.0], [-2.0], [-1.0], [-2.0]) == [0.0]  # policy == reference: a tie


# ------------------------------------------------------ preference satisfaction


def test_preference_satisfaction_counts_each_preference_and_all_at_once():
    def check(response, prefs):
        return {"short": len(response.split()) <= prefs["max_words"], "polite": "please" in response}

    prefs = {"max_words": 3}
    sat = M.preference_satisfaction(["please sit", "please sit down now", "sit"], [prefs] * 3, check,
                                    ("short", "polite"))
    assert list(sat) == ["short", "polite", "all"]
    assert sat == pytest.approx({"short": 2 / 3, "polite": 2 / 3, "all": 1 / 3})
    with pytest.raises(ValueError, match="2 responses but 1 preference sets"):
        M.preference_satisfaction(["a", "b"], [prefs], check, ("short",))
    with pytest.raises(ValueError, match="no responses"):
        M.preference_satisfaction([], [], check, ("short",))
