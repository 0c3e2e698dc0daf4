"""evaluate_model on the tiny model, nested candidate sets and the LLM judge."""

from __future__ import annotations

import math
import random

import pytest

from axolotl_mipo.data.example import Example
from axolotl_mipo.evaluation import metrics as M
from axolotl_mipo.evaluation.evaluate import (
    _identification,
    _nested_candidates,
    evaluate_model,
    evaluate_preferences,
    preference_figures,
    score_human_pairs,
)
from axolotl_mipo.evaluation.judge import LLMJudge, parse_score, run_judge
from axolotl_mipo.generation.base import GenerationResult
from axolotl_mipo.scoring import context_score_matrix
from experiments.tasks import synthetic as S
from experiments.tasks.synthetic import synthetic_checker


def _rows(n_users=6, queries=1, seed=0):
    return S.make_task(n_users=n_users, queries_per_user=queries, seed=seed)


def _examples(rows):
    return S.to_examples(rows)


def test_evaluate_model_returns_every_figure_in_range(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    ex = _examples(_rows(6, 1))
    res = evaluate_model(model, tok, ex, k_values=(2, 4), max_new_tokens=6, seed=3, batch_size=4,
                         checker=synthetic_checker, progress=False)
    f = res.figures
    for name in ("mi_mean", "mi_per_token", "ref_mi_mean", "logp_with_context", "logp_without_context"):
        assert math.isfinite(f[name]), name
    assert f["logp_with_context"] < 0 and f["logp_without_context"] < 0
    assert f["mi_mean"] == pytest.approx(f["logp_with_context"] - f["logp_without_context"], abs=1e-6)
    assert set(res.accuracy_per_k) == {2, 4}
    for k, acc in res.accuracy_per_k.items():
        assert 0.0 <= acc <= f[f"accuracy_frac@K{k}"] <= 1.0
        assert 0.0 <= f[f"ref_accuracy@K{k}"] <= 1.0
    for name in ("rouge_l", "meteor", "self_bleu", "distinct_2", "empty_share", "truncated_share", "pref_all",
                 "pref_topic"):
        assert 0.0 <= f[name] <= 1.0, name
    assert 1 <= f["response_tokens"] <= 6
    assert len(res.mi_per_row) == len(res.responses) == 6
    assert res.extra["identification"]["K4"]["chance"] == 0.25
    run = res.to_run("before", seed=3)
    assert run.all_figures()["accuracy@K2"] == res.accuracy_per_k[2]


def test_evaluate_model_is_seeded_and_batch_invariant(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    ex = _examples(_rows(4, 1))
    kw = dict(k_values=(2,), max_new_tokens=5, progress=False)
    a = evaluate_model(model, tok, ex, seed=1, batch_size=4, **kw)
    b = evaluate_model(model, tok, ex, seed=1, batch_size=1, **kw)
    c = evaluate_model(model, tok, ex, seed=2, batch_size=4, **kw)
    assert a.responses == b.responses
    assert a.figures["mi_mean"] == pytest.approx(b.figures["mi_mean"], abs=1e-5)
    assert a.responses != c.responses


def test_k_larger_than_the_contexts_is_skipped_with_a_note(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    res = evaluate_model(model, tok, _examples(_rows(3, 1)), k_values=(2, 8), max_new_tokens=3, progress=False)
    assert set(res.accuracy_per_k) == {2}
    assert any("K=[8]" in n for n in res.extra["notes"])
    with pytest.raises(ValueError, match="context"):
        from axolotl_mipo.data.example import Example

        evaluate_model(model, tok, [Example(index=0, messages=(("user", "hi"),))], progress=False)


# ------------------------------------------------------- context-blind model


@pytest.mark.parametrize("ks", [(2, 4, 8), (3, 5)])
def test_context_blind_model_identifies_at_chance(tiny_model_and_tokenizer, context_blind_model, ks):
    _, tok = tiny_model_and_tokenizer
    blind = context_blind_model
    ex = _examples(_rows(10, 2, seed=4))
    cands, truth, cols = _nested_candidates([e.context for e in ex], ks, seed=0)
    scores = context_score_matrix(blind, tok, ex, None, cands, batch_size=16)
    res = _identification(scores, truth, cols)
    for k in ks:
        assert res[k].k == k and res[k].chance == pytest.approx(1 / k)
        assert res[k].accuracy == 0.0  # all tied: never strictly identified
        assert res[k].accuracy_fractional == pytest.approx(1 / k)  # exactly chance under random tie-breaking


@pytest.mark.parametrize("k", [2, 4, 8])
def test_uninformative_scores_through_nested_sets_are_at_chance(k):
    # scores that vary but carry no information about which context is the user's
    contexts = [f"user {i % 12}" for i in range(3000)]
    cands, truth, cols = _nested_candidates(contexts, (2, 4, 8), seed=1)
    rng = random.Random(k)
    scores = [[rng.gauss(0, 1) for _ in row] for row in cands]
    acc = _identification(scores, truth, cols)[k].accuracy
    se = math.sqrt((1 / k) * (1 - 1 / k) / len(contexts))
    assert abs(acc - 1 / k) < 4 * se


def test_nested_candidate_sets():
    contexts = [f"c{i % 9}" for i in range(40)]
    cands, truth, cols = _nested_candidates(contexts, (2, 4, 8), seed=5)
    for i, own in enumerate(contexts):
        assert len(cands[i]) == 8 and len(set(cands[i])) == 8 and cands[i][truth[i]] == own
        s2, s4, s8 = (set(cols[k][i]) for k in (2, 4, 8))
        assert truth[i] in s2 and s2 <= s4 <= s8 and (len(s2), len(s4), len(s8)) == (2, 4, 8)
    assert _nested_candidates(contexts, (2, 4, 8), seed=5) == (cands, truth, cols)


# --------------------------------------------------------------------- judge


class _FakeJudgeBackend:
    batch_size = 3

    def __init__(self, answers):
        self.answers = answers
        self.prompts = []

    def generate_batch(self, prompts):
        self.prompts += prompts
        return [GenerationResult(self.answers(p), 1) for p in prompts]


def test_llm_judge_counts_wins_ties_losses_apart():
    ex = _examples(_rows(4, 1))
    responses = ["WIN", "TIE", "LOSE", "BROKEN"]

    def answers(prompt):
        if ex[0].meta["reference"][:20] in prompt or ex[1].meta["reference"][:20] in prompt:
            return " 3"
        if ex[2].meta["reference"][:20] in prompt:
            return "4 because"
        if ex[3].meta["reference"][:20] in prompt:
            return "2"
        return {"WIN": "Score: 5", "TIE": "3", "LOSE": "1", "BROKEN": "no idea"}[
            next(r for r in responses if f"Response: {r}\n" in prompt)]

    backend = _FakeJudgeBackend(answers)
    tally = run_judge(LLMJudge(backend), ex, responses)
    assert (tally["wins"], tally["ties"], tally["losses"], tally["invalid"]) == (1, 1, 1, 1)
    assert tally["win_rate_ties_as_wins"] == pytest.approx(2 / 3)
    assert len(backend.prompts) == 8 and "Score:" in backend.prompts[0]
    assert [parse_score(t) for t in ("Score: 4", "7 then 2", "none", "")] == [4.0, 2.0, None, None]


def test_evaluate_model_reports_the_judge(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    res = evaluate_model(model, tok, _examples(_rows(3, 1)), k_values=(2,), max_new_tokens=3, progress=False,
                         judge=lambda context, query, response: 5.0 if len(response) < 60 else 1.0)
    f = res.figures
    assert f["judge_wins"] + f["judge_ties"] + f["judge_losses"] == 3
    assert res.extra["judge"]["n"] == 3


def _pair_examples(n=4):
    return [Example(index=i, messages=(("user", f"q{i}"),), context=f"user {i}", source="d",
                    meta={"human_chosen": f"good {i}", "human_rejected": f"bad {i}"}) for i in range(n)] + \
        [Example(index=n, messages=(("user", "q"),), context="user x", source="d")]  # no pair: not counted


def _controlled(table):
    """A scorer whose log-probs are read from ``table[(has_context, response)]``; the model is unused."""

    def score(model, tokenizer, prompts, responses, batch_size):
        return [(table[(prompt[0]["role"] == "system", r)], 2) for prompt, r in zip(prompts, responses)]

    return score


def test_known_answer_with_and_without_context_and_implicit_reward():
    # with the context the model prefers chosen on rows 0-2 (3/4); without it only on row 0 (1/4)
    base = {}
    for i in range(4):
        base[(True, f"good {i}")], base[(True, f"bad {i}")] = (-1.0, -5.0) if i < 3 else (-5.0, -1.0)
        base[(False, f"good {i}")], base[(False, f"bad {i}")] = (-1.0, -5.0) if i == 0 else (-5.0, -1.0)
    exs = _pair_examples()
    s_base = score_human_pairs(None, None, exs, logprobs=_controlled(base))
    assert s_base["rows"] == [0, 1, 2, 3]
    fig, det = preference_figures(s_base)
    assert fig["pref_pairs"] == 4
    assert fig["pref_accuracy_with_context"] == 0.75 and fig["pref_accuracy_without_context"] == 0.25
    assert fig["pref_margin_with_context"] == pytest.approx((4 + 4 + 4 - 4) / 4)
    assert det["with_context"]["wins"] == 3 and "implicit_with_context" not in det
    # the adapter moves only row 3 (chosen +6 with the context): implicit reward wins on row 3 alone
    adapter = dict(base)
    adapter[(True, "good 3")] += 6.0
    s_ad = score_human_pairs(None, None, exs, logprobs=_controlled(adapter))
    fig, det = preference_figures(s_ad, reference=s_base)
    assert fig["pref_accuracy_with_context"] == 1.0
    assert fig["pref_accuracy_implicit_with_context"] == 0.25 and det["implicit_with_context"]["ties"] == 3
    assert fig["pref_accuracy_implicit_without_context"] == 0.0  # nothing changed without the context
    lo, hi = M.wilson_interval(1, 4)
    assert (fig["pref_accuracy_implicit_with_context_ci_low"], fig["pref_accuracy_implicit_with_context_ci_high"]) \
        == (lo, hi)


def test_tiny_model_against_itself_and_a_context_blind_model(tiny_model_and_tokenizer, context_blind_model):
    model, tok = tiny_model_and_tokenizer
    exs = _pair_examples()
    base = evaluate_preferences(model, tok, exs, batch_size=3)
    again = evaluate_preferences(model, tok, exs, batch_size=2, reference_scores=base.extra["pair_scores"])
    f = again.figures
    # the same model as its own reference: every implicit margin is 0, a tie, so strict accuracy is 0
    assert f["pref_accuracy_implicit_with_context"] == 0.0
    assert again.extra["preference_accuracy"]["implicit_with_context"]["ties"] == 4
    assert f["pref_accuracy_with_context"] == base.figures["pref_accuracy_with_context"]
    # sums match scoring each response directly
    from axolotl_mipo.data.prompts import build_messages
    from axolotl_mipo.scoring import response_logprobs

    direct = response_logprobs(model, tok, [build_messages(e.messages, e.context, None) for e in exs[:4]],
                               [e.human_pair[0] for e in exs[:4]])
    assert [s for s, _ in base.extra["pair_scores"]["chosen_ctx"]] == pytest.approx([s for s, _ in direct], abs=1e-4)
    # a model that cannot see the context ranks every pair the same way with and without it
    blind = evaluate_preferences(context_blind_model, tok, exs)
    d = blind.extra["preference_accuracy"]
    assert d["with_context"]["wins"] == d["without_context"]["wins"]
    assert d["with_context"]["mean_margin"] == pytest.approx(d["without_context"]["mean_margin"], abs=1e-4)


def test_rows_without_pairs_are_refused_for_preference_only(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    with pytest.raises(ValueError, match="no row has a human pair"):
        evaluate_preferences(model, tok, _pair_examples()[4:])


def test_evaluate_model_adds_preference_accuracy(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    exs = _pair_examples()
    res = evaluate_model(model, tok, exs, k_values=(2,), max_new_tokens=4, batch_size=4, progress=False)
    assert res.figures["pref_pairs"] == 4
    assert 0.0 <= res.figures["pref_accuracy_with_context"] <= 1.0
