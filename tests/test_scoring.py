"""Scoring: response log-probs against a manual forward, on TRL's tokens."""

from __future__ import annotations

import pytest
import torch

from axolotl_mipo.data.prompts import PromptFormat, build_messages
from axolotl_mipo.evaluation import metrics as M
from axolotl_mipo.scoring import (
    conditional_logprobs,
    context_score_matrix,
    response_logprobs,
    tokenize_prompt_response,
)
from experiments.tasks import synthetic as S

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
