"""Answer accuracy: scoring stand-in generations with known answers, Wilson and Newcombe intervals."""

from __future__ import annotations

import math
import random

import pytest

from axolotl_mipo.data.example import GOLD_ANSWER_KEY, GOLD_KIND_KEY, Example
from axolotl_mipo.evaluation.accuracy import (
    AnswerScores,
    accuracy_figures,
    evaluate_accuracy,
    gold_rows,
    merge_into_run,
    paired_difference,
    paired_figures,
    score_answers,
)
from axolotl_mipo.evaluation.metrics import wilson_interval
from axolotl_mipo.evaluation.report import EvalRun, accuracy_lines
from axolotl_mipo.generation.sampling import SamplingSettings


def _row(i, gold, kind="number", question=None):
    q = question or f"Question {i}: what is {i} + {i}?"
    return Example(index=i, messages=(("user", q),), source="t", meta={GOLD_ANSWER_KEY: gold, GOLD_KIND_KEY: kind})


@pytest.mark.fast
def test_score_answers_counts_right_wrong_and_unparseable():
    rows = [_row(0, "4"), _row(1, 2.0), _row(2, "1,000"), _row(3, "C", "choice"), _row(4, "B", "choice")]
    responses = ["2 + 2 = 4\n#### 4", "I think #### 3", "so $1,000.", "The answer is (c)", "no idea"]
    s = score_answers(responses, rows)
    assert s.answers == ["4", "3", "1000", "C", None]
    assert s.correct == [True, False, True, True, False]
    figs = accuracy_figures(s, "greedy")
    assert figs["answer_accuracy_greedy"] == pytest.approx(3 / 5)
    assert figs["answer_unparseable_greedy"] == pytest.approx(1 / 5)  # counted apart, and as wrong above
    assert (figs["answer_accuracy_greedy_ci_low"], figs["answer_accuracy_greedy_ci_high"]) == \
        pytest.approx(wilson_interval(3, 5))
    assert figs["answer_rows"] == 5


@pytest.mark.fast
def test_a_bad_gold_answer_names_the_row_and_field():
    with pytest.raises(ValueError, match=r"row 7 in 't': field 'gold_answer'.*not a number"):
        score_answers(["#### 3"], [_row(7, "seven")])
    with pytest.raises(ValueError, match="same|responses for"):
        score_answers(["a", "b"], [_row(0, "1")])


@pytest.mark.fast
def test_gold_rows_keeps_only_rows_with_an_answer_and_kind():
    rows = [_row(0, "1"), Example(1, (("user", "q"),)), Example(2, (("user", "q"),), meta={GOLD_ANSWER_KEY: "3"})]
    assert [ex.index for ex in gold_rows(rows)] == [0]


def _newcombe_reference(a, b, c, d, z=1.959963984540054):
    """Newcombe (1998) method 10 written out from the paper's formulas, with Wilson limits solved as the
    roots of |p - theta| = z sqrt(theta (1 - theta) / n) (bisection), independently of metrics.wilson_interval."""
    n = a + b + c + d

    def wilson(k):
        p = k / n

        def f(t):
            return abs(p - t) - z * math.sqrt(t * (1 - t) / n)

        def root(lo, hi):  # f(lo) and f(hi) differ in sign
            for _ in range(200):
                mid = (lo + hi) / 2
                if (f(lo) > 0) == (f(mid) > 0):
                    lo = mid
                else:
                    hi = mid
            return (lo + hi) / 2

        low = 0.0 if k == 0 else root(0.0, p)
        high = 1.0 if k == n else root(p, 1.0)
        return low, high

    p1, p2 = (a + b) / n, (a + c) / n
    (l1, u1), (l2, u2) = wilson(a + b), wilson(a + c)
    ad_bc = a * d - b * c
    num = max(ad_bc - n / 2, 0) if ad_bc > 0 else ad_bc
    den = (a + b) * (c + d) * (a + c) * (b + d)
    phi = num / math.sqrt(den) if den else 0.0
    d_hat = p1 - p2
    return (d_hat - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2),
            d_hat + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))


def _outcomes(a, b, c, d):
    adapter = [True] * a + [True] * b + [False] * c + [False] * d
    base = [True] * a + [False] * b + [True] * c + [False] * d
    return adapter, base


@pytest.mark.fast
@pytest.mark.parametrize("table", [(36, 12, 2, 0), (10, 15, 5, 20), (263, 15, 3, 0), (5, 0, 0, 5), (0, 3, 0, 0),
                                   (20, 1, 9, 70)])
def test_newcombe_interval_matches_the_papers_formula(table):
    res = paired_difference(*_outcomes(*table))
    a, b, c, d = table
    assert res["diff"] == pytest.approx((b - c) / sum(table))
    assert (res["adapter_only"], res["base_only"], res["n"]) == (b, c, sum(table))
    lo, hi = _newcombe_reference(*table)
    assert res["ci_low"] == pytest.approx(lo, abs=1e-9) and res["ci_high"] == pytest.approx(hi, abs=1e-9)
    assert -1 <= res["ci_low"] <= res["diff"] <= res["ci_high"] <= 1


@pytest.mark.fast
def test_newcombe_interval_is_not_empty_when_the_models_agree_everywhere():
    # a percentile bootstrap gives [0, 0] here: no discordant row to resample
    res = paired_difference(*_outcomes(7, 0, 0, 3))
    assert res["diff"] == 0 and res["ci_low"] < -0.1 and res["ci_high"] > 0.1


@pytest.mark.fast
def test_newcombe_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = random.Random(0)
    # correlated paired outcomes: P(base right) 0.5, P(adapter right) 0.6
    cells = {(True, True): 0.4, (True, False): 0.2, (False, True): 0.1, (False, False): 0.3}
    keys, weights = list(cells), list(cells.values())
    covered, trials = 0, 1500
    for _ in range(trials):
        draws = rng.choices(keys, weights, k=80)
        res = paired_difference([x for x, _ in draws], [y for _, y in draws])
        covered += res["ci_low"] <= 0.1 <= res["ci_high"]
    assert 0.93 <= covered / trials <= 0.975


@pytest.mark.fast
def test_paired_figures_need_the_same_rows():
    base = {"greedy": AnswerScores([1, 2], ["1", None], [True, False])}
    adapter = {"greedy": AnswerScores([1, 2], ["1", "2"], [True, True])}
    assert paired_figures(adapter, base)["greedy"]["diff"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="different rows"):
        paired_figures({"greedy": AnswerScores([1, 3], ["1", "2"], [True, True])}, base)


class _Tok:
    """The bits of a tokenizer evaluate_accuracy touches: a chat template and special tokens."""

    all_special_tokens: list[str] = []
    added_tokens_decoder: dict = {}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


@pytest.mark.fast
def test_evaluate_accuracy_with_stand_in_generations_greedy_and_sampled():
    rows = [_row(i, str(2 * i)) for i in range(6)] + [Example(99, (("user", "no gold"),))]
    seen = []

    def generate(model, tokenizer, prompts, sampling, batch_size, progress):
        seen.append((sampling.greedy, list(prompts)))
        if sampling.greedy:  # right on the even rows, no answer on row 5
            return [f"#### {2 * i}" if i % 2 == 0 else ("nothing" if i == 5 else "#### 1") for i in range(6)]
        return ["#### 0"] * 6  # right on row 0 only

    sampling = SamplingSettings(temperature=0.7, top_p=0.9, max_new_tokens=16, seed=3)
    figs, scores = evaluate_accuracy(None, _Tok(), rows, sampling=sampling, generate=generate)
    assert [g for g, _ in seen] == [True, False]
    assert all(len(p) == 6 for _, p in seen)  # the row without a gold answer is not asked
    # the gold answer never reaches a prompt
    assert not any("#### " in prompt for _, ps in seen for prompt in ps)
    assert figs["answer_accuracy_greedy"] == pytest.approx(3 / 6)
    assert figs["answer_unparseable_greedy"] == pytest.approx(1 / 6)
    assert figs["answer_accuracy_sampled"] == pytest.approx(1 / 6)
    assert scores["greedy"].rows == list(range(6))
    with pytest.raises(ValueError, match="answer_field"):
        evaluate_accuracy(None, _Tok(), [Example(0, (("user", "q"),))], sampling=sampling, generate=generate)


@pytest.mark.fast
def test_merge_into_run_and_summary_lines():
    base = {"greedy": AnswerScores([0, 1, 2], ["1", "2", None], [True, False, False])}
    adapter = {"greedy": AnswerScores([0, 1, 2], ["1", "3", "3"], [True, True, True])}
    run = EvalRun(label="adapter")
    paired = paired_figures(adapter, base)
    merge_into_run(run, accuracy_figures(adapter["greedy"], "greedy"), adapter, paired)
    assert run.figures["answer_accuracy_greedy"] == 1.0
    assert run.figures["answer_accuracy_greedy_paired_diff"] == pytest.approx(2 / 3)
    assert run.extra["answer_accuracy"]["greedy"]["correct"] == [True, True, True]
    assert "Newcombe" in run.extra["answer_accuracy"]["paired"]["greedy"]["interval"]
    lines = accuracy_lines(paired)
    assert any("Wilson" in line for line in lines)
    assert any("answer accuracy (greedy), adapter − base" in line and "3 rows, 2 right only with adapter" in line
               for line in lines)


# -- end to end: axolotl train with partial_prompt on rows with gold answers, then axolotl-mipo eval ---------


def _problems(n, start):
    rows = []
    for i in range(start, start + n):
        a, b = i % 7 + 2, i % 5 + 1
        rows.append({"prompt": f"Kim has {a} pens. She buys {b} more pens. Then she finds one pen. How many pens "
                               "does she have? Give the final answer after ####.",
                     "answer": str(a + b + 1 + 987000)})  # gold answers no text can contain by chance
    return rows


@pytest.mark.e2e
def test_reasoning_path_trains_without_the_gold_and_eval_reports_accuracy(tmp_path, tiny_mipo_config, axolotl_cli):
    import json as _json

    from axolotl_mipo.cli import main

    for name, rows in (("train", _problems(8, 0)), ("heldout", _problems(6, 100))):
        (tmp_path / f"{name}.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in rows))
    path = tiny_mipo_config(strategy="partial_prompt", datasets=[
        {"path": str(tmp_path / "train.jsonl"), "format": "prompt", "answer_field": "answer",
         "answer_kind": "number"}])
    axolotl_cli(["train", str(path)], cwd=tmp_path, timeout=1200)  # 2 minutes alone; more on a busy machine
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").is_file()
    # nothing training wrote (prepared dataset, generation cache, logs) holds a gold answer
    golds = [r["answer"].encode() for r in _problems(8, 0)]
    for f in [*tmp_path.joinpath("prepared").rglob("*"), *out.rglob("*")]:
        if f.is_file() and f.suffix != ".safetensors":
            data = f.read_bytes()
            assert not any(g in data for g in golds), f

    report = tmp_path / "report"
    rc = main(["eval", str(path), "--adapter", str(out), "--data", str(tmp_path / "heldout.jsonl"),
               "--max-new-tokens", "8", "--out", str(report), "--no-progress"])
    assert rc == 0
    data = _json.loads((report / "report.json").read_text())
    runs = {r["label"]: r for r in data["runs"]}
    assert set(runs) == {"base", "adapter"}
    for run in runs.values():
        figs = run["figures"]
        for mode in ("greedy", "sampled"):
            assert 0 <= figs[f"answer_accuracy_{mode}_ci_low"] <= figs[f"answer_accuracy_{mode}"] \
                <= figs[f"answer_accuracy_{mode}_ci_high"] <= 1
            assert 0 <= figs[f"answer_unparseable_{mode}"] <= 1
            assert len(run["extra"]["answer_accuracy"][mode]["correct"]) == 6
        assert figs["answer_rows"] == 6 and "mi_mean" not in figs  # no context: no personalization figures
    ad = runs["adapter"]["figures"]
    for mode in ("greedy", "sampled"):
        assert -1 <= ad[f"answer_accuracy_{mode}_paired_ci_low"] <= ad[f"answer_accuracy_{mode}_paired_diff"] \
            <= ad[f"answer_accuracy_{mode}_paired_ci_high"] <= 1
    assert data["settings"]["answer_sampling"]["temperature"] == 0.1  # the config's, not eval's --temperature
    md = (report / "summary.md").read_text()
    assert "answer_accuracy_greedy" in md and "Newcombe" in md and "Wilson" in md


@pytest.mark.fast
@pytest.mark.parametrize("n", [1, 6, 7, 50, 333])
def test_wilson_interval_holds_the_point_at_zero_and_all(n):
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0
