"""Preference accuracy on the users' own human pairs: known answers, the tiny model, and `axolotl-mipo eval`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from axolotl_mipo.data.example import Example
from axolotl_mipo.evaluation import metrics as M
from axolotl_mipo.evaluation.evaluate import (
    evaluate_model,
    evaluate_preferences,
    preference_figures,
    score_human_pairs,
)

FIX = Path(__file__).parent / "fixtures" / "presets"


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
    from axolotl_mipo.evaluation.scoring import response_logprobs

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


def test_eval_cli_reports_preference_accuracy_for_base_and_adapter(tmp_path, tiny_model_dir, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from axolotl_mipo.cli import main

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    cfg = {"base_model": str(tiny_model_dir), "plugins": ["axolotl_mipo.MIPOPlugin"], "rl": "dpo",
           "mipo": {"datasets": [{"path": str(FIX / "community_alignment.csv"), "format": "community_alignment"}],
                    "generation": {"max_new_tokens": 4, "batch_size": 4, "device": "cpu"}},
           "output_dir": str(tmp_path / "out")}
    (tmp_path / "cfg.yml").write_text(yaml.safe_dump(cfg))
    for extra, name in (([], "both"), (["--no-base"], "adapter-only")):
        out = tmp_path / name
        rc = main(["eval", str(tmp_path / "cfg.yml"), "--adapter", str(tmp_path / "adapter"), "--preference-only",
                   "--out", str(out), "--no-progress", *extra])
        assert rc == 0
        data = json.loads((out / "report.json").read_text())
        runs = {r["label"]: r for r in data["runs"]}
        assert set(runs) == ({"adapter"} if extra else {"base", "adapter"})
        ad = runs["adapter"]["figures"]
        assert ad["pref_pairs"] == 3  # the 4th conversation has no preferred response
        assert 0 <= ad["pref_accuracy_implicit_with_context"] <= 1
        assert ad["pref_accuracy_with_context_ci_low"] <= ad["pref_accuracy_with_context"] \
            <= ad["pref_accuracy_with_context_ci_high"]
        if not extra:
            assert "pref_accuracy_implicit_with_context" not in runs["base"]["figures"]
        md = (out / "summary.md").read_text()
        assert "pref_accuracy_with_context" in md and "Wilson" in md
    both = json.loads((tmp_path / "both" / "report.json").read_text())["runs"][1]["figures"]
    alone = json.loads((tmp_path / "adapter-only" / "report.json").read_text())["runs"][0]["figures"]
    # the base's scores come from the base run or from a separate base pass: the same figures
    assert both["pref_margin_implicit_with_context"] == pytest.approx(alone["pref_margin_implicit_with_context"],
                                                                     abs=1e-4)
