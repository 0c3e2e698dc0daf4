"""POPI's trained summarizer: the reward against a hand computation, its GRPO dataset, the plugin's config checks."""

import math
from pathlib import Path

import pytest
import yaml

from axolotl_mipo.args import MIPODatasetConfig
from axolotl_mipo.data.prompts import PromptFormat, build_messages
from axolotl_mipo.errors import MIPOConfigError, MIPODataError
from axolotl_mipo.popi import reward as R

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "presets"
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


# -- the GRPO dataset ------------------------------------------------------------------------------------

def _examples(on_bad_row="raise"):
    from axolotl_mipo.data.rows import load_examples

    return load_examples([MIPODatasetConfig(path=str(FIXTURES / "community_alignment.csv"),
                                            format="community_alignment", max_items=2)], on_bad_row=on_bad_row)


def test_rows_use_preference_summarys_prompt_and_carry_the_pair(tiny_model_and_tokenizer):
    from axolotl_mipo.data.summary import DEFAULT_TEMPLATE, summary_prompt
    from axolotl_mipo.popi.data import summarizer_rows

    _, tok = tiny_model_and_tokenizer
    examples = [ex for ex in _examples() if ex.human_pair is not None]
    rows, report = summarizer_rows(examples, tok, max_words=40)
    assert len(rows) == len(examples) == report.rows_out and not report.skipped
    for ex, row in zip(examples, rows):
        rendered = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        assert rendered == summary_prompt(tok, ex.context, DEFAULT_TEMPLATE, 40)
        assert (row["popi_chosen"], row["popi_rejected"]) == ex.human_pair
        assert row["popi_query"] == ex.message_dicts() and row["popi_user"] == ex.user_id
        assert ex.human_pair[0] not in row["prompt"][0]["content"]  # the held-out answer is not in the history


def test_rows_fit_long_histories_like_preference_summary(tiny_model_and_tokenizer):
    from axolotl_mipo.popi.data import summarizer_rows

    _, tok = tiny_model_and_tokenizer
    examples = [ex for ex in _examples() if ex.human_pair is not None]
    from axolotl_mipo.data.summary import DEFAULT_TEMPLATE, summary_prompt

    limit = len(tok(summary_prompt(tok, "", DEFAULT_TEMPLATE, 60), add_special_tokens=False)["input_ids"]) + 20
    rows, report = summarizer_rows(examples, tok, max_prompt_tokens=limit)
    assert report.truncated_histories > 0
    for row in rows:
        text = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        assert len(tok(text, add_special_tokens=False)["input_ids"]) <= limit


def test_row_without_pair_is_an_error_naming_it_or_a_counted_skip(tiny_model_and_tokenizer):
    from axolotl_mipo.popi.data import summarizer_rows

    _, tok = tiny_model_and_tokenizer
    examples = _examples()
    bad = next(ex for ex in examples if ex.human_pair is None)
    with pytest.raises(MIPODataError, match=rf"row {bad.index}.*held-out human pair.*on_bad_row: skip"):
        summarizer_rows(examples, tok)
    rows, report = summarizer_rows(examples, tok, on_bad_row="skip")
    assert len(rows) == len(examples) - 1
    assert report.skipped == {"without a held-out human pair (chosen/rejected)": 1}
    assert "skipped: 1 without a held-out human pair" in report.summary()


def test_no_usable_row_at_all_is_an_error(tiny_model_and_tokenizer):
    from dataclasses import replace

    from axolotl_mipo.popi.data import summarizer_rows

    _, tok = tiny_model_and_tokenizer
    examples = [replace(ex, context="") for ex in _examples()]
    with pytest.raises(MIPODataError, match="no row can train the summarizer.*without a user history"):
        summarizer_rows(examples, tok, on_bad_row="skip")


# -- the plugin's config checks --------------------------------------------------------------------------

def _cfg(**over):
    cfg = yaml.safe_load((REPO / "example_configs" / "popi-summarizer-tiny-cpu.yml").read_text())
    cfg.update(over)
    return cfg


def test_grpo_config_without_the_reward_says_what_to_add():
    from axolotl_mipo.popi.plugin import POPIPlugin

    cfg = _cfg(trl={"use_vllm": False})
    with pytest.raises(MIPOConfigError, match=r"trl: \{reward_funcs: \[axolotl_mipo\.popi\.reward\.popi_reward\]\}"):
        POPIPlugin().register(cfg)


def test_plugin_fills_rl_and_refuses_other_rl_and_a_mipo_block():
    from axolotl_mipo.popi.plugin import POPIPlugin

    cfg = _cfg(rl=None)
    POPIPlugin().register(cfg)
    assert cfg["rl"] == "grpo" and cfg["datasets"][0]["path"].endswith("community_alignment.csv")
    with pytest.raises(MIPOConfigError, match="set 'rl: grpo'"):
        POPIPlugin().register(_cfg(rl="dpo"))
    with pytest.raises(MIPOConfigError, match="two runs"):
        POPIPlugin().register(_cfg(mipo={"datasets": [{"path": "x"}]}))
    with pytest.raises(MIPOConfigError, match=r"popi\.betta: unknown option; did you mean 'beta'"):
        POPIPlugin().register(_cfg(popi={**_cfg()["popi"], "betta": 1.0}))


def test_mipo_plugin_still_refuses_grpo():
    from axolotl_mipo.plugin import MIPOPlugin

    with pytest.raises(MIPOConfigError, match="set 'rl: dpo'"):
        MIPOPlugin().register({"rl": "grpo", "mipo": {"datasets": [{"path": "x.jsonl"}]}})


def test_reward_settings_follow_the_config():
    from axolotl_mipo.popi.args import POPIConfig
    from axolotl_mipo.popi.plugin import reward_settings

    popi = POPIConfig.model_validate({"datasets": [{"path": "x"}], "beta": 0.1, "context_placement": "user_prefix",
                                      "generator_adapter": "/a"})
    s = reward_settings({"base_model": "/m"}, popi, device="cuda:1")
    assert (s.generator, s.adapter, s.beta, s.device, s.fmt.placement) == ("/m", "/a", 0.1, "cuda:1", "user_prefix")
