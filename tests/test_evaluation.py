"""Evaluation: metrics on cases whose right value is known, scoring against a manual forward,
the synthetic task's determinism and checkers, and the report files."""

from __future__ import annotations

import json
import math
import random
import sys

import pytest
import torch

from axolotl_mipo.data.prompts import PromptFormat, build_messages
from axolotl_mipo.evaluation import metrics as M
from axolotl_mipo.evaluation import synthetic as S
from axolotl_mipo.evaluation.report import EvalRun, summarize, write_report
from axolotl_mipo.evaluation.scoring import (
    conditional_logprobs,
    context_score_matrix,
    response_logprobs,
    tokenize_prompt_response,
)

# ------------------------------------------------------------------ metrics


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
    assert t.win_rate_ties_as_wins == 6 / 8  # the paper's figure
    assert t.win_rate_ties_half == 4.5 / 8
    assert [M.judge_outcome(a, b) for a, b in [(5, 3), (3, 3), (2, 4)]] == ["win", "tie", "loss"]
    assert M.judge_outcome(3.2, 3.0, tol=0.5) == "tie"
    with pytest.raises(ValueError):
        M.judge_tally(["draw"])
    with pytest.raises(ValueError):
        M.judge_tally([True])
    assert math.isnan(M.judge_tally([]).win_rate)


# ------------------------------------------------------------------ scoring

PROMPTS = [
    [{"role": "system", "content": "I like short answers."}, {"role": "user", "content": "Plan my trip."}],
    [{"role": "user", "content": "Recommend a book."}],
    [{"role": "system", "content": "I prefer bullet points. " * 6}, {"role": "user", "content": "Write a greeting."}],
    [{"role": "system", "content": "casual chat"}, {"role": "user", "content": "What is a good hobby?"}],
]
RESPONSES = ["Try travel tips.", "jazz music poetry history facts " * 4, "- Hi\n- Hello", ""]


def _manual_logprob(model, tok, prompt, response):
    # TRL's split, one unpadded sequence, full forward
    p_ids = tok.apply_chat_template(prompt, tokenize=True, return_dict=True, add_generation_prompt=True)["input_ids"]
    full = tok.apply_chat_template(prompt + [{"role": "assistant", "content": response}], tokenize=True,
                                   return_dict=True)["input_ids"]
    assert full[: len(p_ids)] == p_ids
    with torch.no_grad():
        lp = model(torch.tensor([full])).logits[0].float().log_softmax(-1)
    r_ids = full[len(p_ids):]
    return sum(lp[len(p_ids) + j - 1, t].item() for j, t in enumerate(r_ids)), len(r_ids)


def test_response_logprobs_matches_manual_forward(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    batched = response_logprobs(model, tok, PROMPTS, RESPONSES, batch_size=8)
    single = response_logprobs(model, tok, PROMPTS, RESPONSES, batch_size=1)
    odd = response_logprobs(model, tok, PROMPTS, RESPONSES, batch_size=3)
    for (p, r), b, s, o in zip(zip(PROMPTS, RESPONSES), batched, single, odd):
        lp, n = _manual_logprob(model, tok, p, r)
        assert b[1] == s[1] == o[1] == n > 0  # the end-of-turn token is scored even for an empty response
        assert b[0] == pytest.approx(lp, abs=1e-5)
        assert s[0] == pytest.approx(lp, abs=1e-5)
        assert o[0] == pytest.approx(lp, abs=1e-5)
    assert response_logprobs(model, tok, [], []) == []
    with pytest.raises(ValueError):
        response_logprobs(model, tok, PROMPTS, RESPONSES[:2])


def test_response_tokens_are_trls(tiny_model_and_tokenizer):
    _, tok = tiny_model_and_tokenizer
    p_ids, r_ids, ok = tokenize_prompt_response(tok, PROMPTS[0], "Try travel tips.")
    assert ok
    assert tok.decode(r_ids) == "Try travel tips.<|eot_id|>"


def test_scoring_restores_training_mode(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    model.train()
    try:
        response_logprobs(model, tok, PROMPTS[:1], RESPONSES[:1])
        assert model.training
    finally:
        model.eval()


def test_context_blind_model_has_zero_mi_and_chance_accuracy(tiny_model_and_tokenizer, context_blind_model):
    _, tok = tiny_model_and_tokenizer
    blind = context_blind_model
    rows = S.make_task(n_users=6, queries_per_user=2, seed=1)
    examples = S.to_examples(rows)
    with_c, without_c = conditional_logprobs(blind, tok, examples, batch_size=4)
    mi = M.pointwise_mi(with_c, without_c)
    assert mi.mean == pytest.approx(0.0, abs=1e-6)
    assert max(abs(x) for x in mi.per_row) < 1e-6
    cands, truth = M.build_candidate_sets([ex.context for ex in examples], 3, seed=0)
    scores = context_score_matrix(blind, tok, examples, None, cands, batch_size=5)
    acc = M.context_identification_accuracy(scores, truth)
    assert acc.accuracy == 0.0
    assert acc.accuracy_fractional == pytest.approx(1 / 3)


def test_tiny_model_sees_the_context(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    examples = S.to_examples(S.make_task(n_users=3, queries_per_user=1, seed=0))
    fmt = PromptFormat(placement="user_prefix")
    with_c, without_c = conditional_logprobs(model, tok, examples, fmt=fmt)
    # the context changes the prompt, so a real (random) transformer's scores move
    assert any(abs(a[0] - b[0]) > 1e-4 for a, b in zip(with_c, without_c))
    lp, _ = _manual_logprob(model, tok, build_messages(examples[0].messages, examples[0].context, fmt),
                            examples[0].meta["reference"])
    assert with_c[0][0] == pytest.approx(lp, abs=1e-5)


# ---------------------------------------------------------------- synthetic


def test_synthetic_task_is_deterministic():
    a = S.make_task(n_users=10, queries_per_user=3, seed=7)
    assert a == S.make_task(n_users=10, queries_per_user=3, seed=7)
    assert a != S.make_task(n_users=10, queries_per_user=3, seed=8)
    assert len(a) == 30 and set(a[0]) >= {"context", "query", "reference", "user_id"}
    users = S.make_users(10, seed=7)
    assert len({u.context for u in users}) == 10
    assert len({tuple(u.preferences().values()) for u in users}) == 10
    with pytest.raises(ValueError):
        S.make_users(S.MAX_USERS + 1)


@pytest.mark.parametrize("seed", range(3))
def test_references_obey_own_preferences_only(seed):
    rows = S.make_task(n_users=S.MAX_USERS, queries_per_user=len(S.QUERIES), seed=seed)
    users = S.users_from_rows(rows)
    for row in rows:
        assert all(S.check_preferences(row["reference"], users[row["user_id"]]).values()), row
        for uid, other in users.items():
            if uid != row["user_id"]:
                assert not all(S.check_preferences(row["reference"], other).values())
    refs = [r["reference"] for r in rows]
    sat = S.preference_satisfaction(refs, [users[r["user_id"]] for r in rows])
    assert sat == {"length": 1.0, "formality": 1.0, "topic": 1.0, "format": 1.0, "all": 1.0}


def test_checkers_on_hand_written_responses():
    user = {"length": "short", "formality": "casual", "topic": "music", "format": "prose"}
    assert S.check_preferences("Hey, go to a jazz concert!", user) == dict.fromkeys(S.DIMENSIONS, True)
    bad = S.check_preferences("- I would recommend cooking pasta.\n- Furthermore, bake bread.", user)
    assert bad == {"length": True, "formality": False, "topic": False, "format": False}
    assert not S.check_preferences("Hey, jazz " + "music " * 40, user)["length"]
    assert S.check_preferences("Hey, jazz " + "music " * 60, {**user, "length": "long"})["length"]
    assert not S.check_preferences("Hey, a jazz song and a football match!", user)["topic"]
    assert not S.check_preferences("", user)["length"]


def test_synthetic_rows_load_through_the_row_reader(tmp_path):
    from axolotl_mipo.args import MIPODatasetConfig
    from axolotl_mipo.data.rows import load_examples

    rows = S.make_task(n_users=4, queries_per_user=2, seed=0)
    path = S.write_jsonl(rows, tmp_path / "task.jsonl")
    loaded = load_examples([MIPODatasetConfig(path=str(path), reference_field="reference")])
    mine = S.to_examples(rows)
    assert [(e.messages, e.context, e.meta["reference"]) for e in loaded] == \
        [(e.messages, e.context, e.meta["reference"]) for e in mine]


# ------------------------------------------------------------------- report


def _runs():
    rng = random.Random(0)
    runs = []
    for label, shift in (("before", 0.0), ("after", 0.5)):
        for seed in (0, 1):
            runs.append(EvalRun(
                label=label, seed=seed,
                figures={"mi_mean": shift + 0.1 * seed, "rouge_l": 0.3 + shift / 10, "self_bleu": float("nan")},
                mi_per_row=[rng.gauss(shift, 1) for _ in range(50)],
                accuracy_per_k={2: 0.5 + shift / 2, 4: 0.25 + shift / 2},
                extra={"judge": M.judge_tally(["win", "tie"])},
            ))
    return runs


def test_summary_mean_and_spread():
    s = summarize(_runs())
    assert s["after"]["mi_mean"]["mean"] == pytest.approx(0.55)
    assert s["after"]["mi_mean"]["std"] == pytest.approx(math.sqrt(0.005))
    assert s["before"]["accuracy@K4"]["mean"] == 0.25
    assert s["before"]["self_bleu"]["mean"] is None and s["before"]["self_bleu"]["n"] == 0


def test_write_report(tmp_path):
    pytest.importorskip("matplotlib")
    paths = write_report(tmp_path, _runs(), title="demo", notes=["ties count as misses"])
    data = json.loads(paths["json"].read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert data["summary"]["after"]["rouge_l"]["mean"] == pytest.approx(0.35)
    assert data["runs"][0]["extra"]["judge"]["ties"] == 1
    assert sorted(data["plots"]) == ["accuracy_per_k.png", "mi_hist.png"]
    for name in ("mi_hist", "accuracy_per_k"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "| figure | before | after | Δ (after − before) |" in md
    assert "± " in md and "ties count as misses" in md


def test_report_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    paths = write_report(tmp_path, _runs()[:1])
    data = json.loads(paths["json"].read_text())
    assert data["plots"] == [] and any("matplotlib" in n for n in data["notes"])
    assert not list(tmp_path.glob("*.png"))
