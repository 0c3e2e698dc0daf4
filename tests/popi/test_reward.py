"""POPI's summarizer reward (arXiv 2510.17881) against a hand computation on the tiny model."""

import math
from pathlib import Path

import pytest

from axolotl_mipo.data.prompts import PromptFormat, build_messages
from axolotl_mipo.errors import MIPOConfigError, MIPODataError
from axolotl_mipo.popi import reward as R

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "presets"
QUERY = [{"role": "user", "content": "What should I cook tonight?"}]
CHOSEN, REJECTED = "A quick vegan stir-fry with tofu.", "A steak, medium rare."


def _hand_logp(model, tok, prompt, response):
    """log p(response | prompt), one unpadded sequence, straight from the logits."""
    import torch

    p = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    full = tok.apply_chat_template(prompt + [{"role": "assistant", "content": response}], tokenize=True,
                                   return_dict=True)["input_ids"]
    assert full[:len(p)] == p
    ids = torch.tensor([full])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    return sum(logp[t - 1, full[t]].item() for t in range(len(p), len(full)))


@pytest.fixture()
def reward(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer

    def make(beta=0.5, length_penalty=0.0, fmt=None, batch_size=2):
        settings = R.RewardSettings(generator="unused", beta=beta, length_penalty=length_penalty,
                                    fmt=fmt or PromptFormat(), batch_size=batch_size)
        return R.configure(settings, R.FrozenGenerator(model, tok, batch_size=batch_size))

    yield make
    R._REWARD = None


@pytest.mark.parametrize("beta,placement", [(0.5, "system"), (0.01, "user_prefix")])
def test_reward_equals_the_hand_computed_dpo_loss(tiny_model_and_tokenizer, reward, beta, placement):
    import torch

    model, tok = tiny_model_and_tokenizer
    fmt = PromptFormat(placement=placement)
    r = reward(beta=beta, length_penalty=0.01, fmt=fmt)
    summaries = ["The user is vegan and cooks fast.", "Likes steak.", "A long summary " * 6]
    metrics = {}
    got = R.popi_reward(
        prompts=[[{"role": "user", "content": "summarize"}]] * 3,
        completions=[[{"role": "assistant", "content": s}] for s in summaries],
        completion_ids=[[1]] * 3, popi_query=[QUERY] * 3, popi_chosen=[CHOSEN] * 3, popi_rejected=[REJECTED] * 3,
        trainer_state=None, log_extra=lambda *a: None, log_metric=lambda k, v: metrics.setdefault(k, v),
    )
    ref = _hand_logp(model, tok, QUERY, CHOSEN) - _hand_logp(model, tok, QUERY, REJECTED)
    for s, value in zip(summaries, got):
        prompt = build_messages([(m["role"], m["content"]) for m in QUERY], s.strip(), fmt)
        delta = _hand_logp(model, tok, prompt, CHOSEN) - _hand_logp(model, tok, prompt, REJECTED) - ref
        assert abs(delta) > 1e-4  # the summary changes the scores, so the test can tell policy from reference
        dpo = torch.nn.functional.logsigmoid(torch.tensor(beta * delta, dtype=torch.float64)).item() / beta
        n_tok = len(tok(s.strip(), add_special_tokens=False)["input_ids"])
        assert value == pytest.approx(dpo - 0.01 * n_tok, abs=1e-4)
    assert metrics["popi/length_penalty"] > 0 and metrics["popi/empty_summaries"] == 0
    assert r.stats.reference_rows == 1  # one (query, pair): its reference term is computed once


def test_empty_summary_gets_the_query_alone_reward_and_is_counted(reward):
    r = reward(beta=0.01)
    metrics = {}
    got = R.popi_reward([QUERY, QUERY], ["  \n", ""], popi_query=[QUERY] * 2, popi_chosen=[CHOSEN] * 2,
                        popi_rejected=[REJECTED] * 2, log_metric=lambda k, v: metrics.setdefault(k, v))
    assert got == [pytest.approx(-math.log(2) / 0.01)] * 2
    assert r.stats.empty_summaries == 2 and metrics["popi/empty_summaries"] == 2.0


def test_reference_is_cached_across_calls(reward):
    r = reward()
    kw = dict(popi_query=[QUERY], popi_chosen=[CHOSEN], popi_rejected=[REJECTED])
    first = R.popi_reward([QUERY], ["vegan"], **kw)
    second = R.popi_reward([QUERY], ["vegan"], **kw)
    assert first == second and r.stats.reference_rows == 1 and r.stats.calls == 2


def test_loss_is_stable_at_extreme_margins():
    assert R.popi_loss(1e6, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert R.popi_loss(-1e6, 1.0) == pytest.approx(1e6)
    assert R.popi_loss(0.0, 0.01) == pytest.approx(math.log(2) / 0.01)


def test_unconfigured_reward_and_missing_columns_are_named():
    R._REWARD = None
    with pytest.raises(MIPOConfigError, match="POPIPlugin"):
        R.popi_reward(["p"], ["s"], popi_query=[QUERY], popi_chosen=["a"], popi_rejected=["b"])
    R.configure(R.RewardSettings(generator="unused"), generator=object())
    try:
        with pytest.raises(MIPODataError, match="popi_rejected"):
            R.popi_reward(["p"], ["s"], popi_query=[QUERY], popi_chosen=["a"])
    finally:
        R._REWARD = None


def test_reward_keeps_axolotls_signature_check():
    # Axolotl refuses a reward function with fewer than two parameters; TRL passes prompts/completions by name
    import inspect

    params = inspect.signature(R.popi_reward).parameters
    assert list(params)[:2] == ["prompts", "completions"] and any(
        p.kind is p.VAR_KEYWORD for p in params.values())
