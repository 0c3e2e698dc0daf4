"""The reasoning study's plan, decision rule, Holm families, letters and costs on hand-made per-question results."""

from pathlib import Path

import pytest

from experiments.reasoning import decide as D
from experiments.reasoning import run as R

PLAN = Path(R.__file__).resolve().parent / "PLAN.md"
pytestmark = pytest.mark.fast


def _e(mean, p_holm):
    return {"mean": mean, "p_holm": p_holm}


@pytest.mark.parametrize("acc, unparseable, verdict", [
    (_e(0.10, 0.01), _e(0.0, 1.0), "improves"),
    (_e(0.10, 0.05), _e(-0.2, 0.01), "improves"),  # p = alpha counts; fewer unparseable answers is no harm
    # more right answers but also more unreadable ones at the same level: not an improvement, not a harm
    (_e(0.10, 0.01), _e(0.2, 0.01), "indistinguishable"),
    (_e(-0.10, 0.01), _e(0.0, 1.0), "harms"),
    (_e(0.05, 0.40), _e(0.2, 0.01), "harms"),  # unreadable answers up with no accuracy gain
    (_e(0.10, 0.06), _e(0.0, 1.0), "indistinguishable"),
    (_e(None, None), None, "indistinguishable"),
])
def test_the_plans_rule_for_one_arm_and_task(acc, unparseable, verdict):
    assert D.classify(acc, unparseable, 0.05) == verdict


def test_the_committed_plan_is_read_as_the_issue_asks():
    plan = R.load_plan(PLAN)
    assert len(plan["seeds"]) >= 3 and set(plan["tasks"]) == {"numeric", "choice"}
    assert all(t["heldout"] * len(plan["seeds"]) >= 200 for t in plan["tasks"].values())
    assert [(a["strategy"], a["loss"]) for a in plan["arms"]] == [("mismatched_prompt", "dpo"),
                                                                  ("partial_prompt", "dpo")]
    assert plan["primary"] == ["accuracy", "unparseable"] and "max_steps" not in plan["training"]
    smoke = R.load_plan(PLAN, smoke=True)
    assert smoke["mode"] == "smoke" and len(smoke["seeds"]) == 1 and smoke["training"]["max_steps"] == 2


def _model(acc, unp, answers=None):
    n = len(acc)
    return {"per_row": {"accuracy": acc, "unparseable": unp, "limit_hit": [0] * n, "new_tokens": [5] * n},
            "answers": answers or ["A"] * n, "gold": ["A", "B"] * (n // 2), "wall_s": 1.0, "cpu_s": 2.0}


def _training(kept=8, trained=True):
    out = {"trained": trained, "log": {"logged_steps": 2 if trained else 0, "pairs_kept": kept, "pairs_planned": 8},
           "stages": {"train": {"wall_s": 10.0 if trained else 0.0, "cpu_s": 18.0 if trained else 0.0}},
           "wall_s": 12.0, "cpu_s": 20.0}
    if not trained:
        out["log"] = {}
        out["reason"] = "axolotl_mipo.errors.MIPODataError: no usable pairs: 8 planned, 8 identical"
    return out


def test_report_families_letters_and_an_untrained_arm():
    plan = R.load_plan(PLAN, smoke=True)
    plan["seeds"] = [20, 21]
    base = [0, 1] * 20
    results = {}
    for s in plan["seeds"]:
        results[s] = {
            # mismatched_prompt gets every numeric question right: a clear improvement
            "numeric": {"base": _model(base, [0] * 40), "arms": {"mismatched_prompt": _model([1] * 40, [0] * 40),
                                                                  "partial_prompt": _model(base, [0] * 40)},
                        "training": {"mismatched_prompt": _training(), "partial_prompt": _training()}},
            # every answer "A": no pair kept by mismatched_prompt, whose model is then the base
            "choice": {"base": _model(base, [0] * 40),
                       "arms": {"mismatched_prompt": _model(base, [0] * 40), "partial_prompt": _model(base, [1] * 40)},
                       "training": {"mismatched_prompt": _training(0, trained=False), "partial_prompt": _training()}},
        }
    doc = D.report(results, plan, 1.0, 1.0)
    assert len(doc["family_a"]) == 8 and len(doc["family_b"]) == 4
    assert doc["verdicts"] == {"mismatched_prompt|numeric": "improves", "mismatched_prompt|choice": "indistinguishable",
                               "partial_prompt|numeric": "indistinguishable", "partial_prompt|choice": "harms"}
    assert doc["family_a"]["mismatched_prompt|numeric|accuracy"]["mean"] == pytest.approx(0.5)
    assert "reproduces" in doc["conclusion"] and "Harmed" in doc["conclusion"]
    lt = doc["letters"]["choice"]["base"]
    assert lt["mode"] == "A" and lt["mode_share"] == 1.0 and lt["always_mode_accuracy"] == 0.5
    c = doc["costs"]["mismatched_prompt|choice"]
    assert c["untrained_seeds"] == [20, 21] and c["steps"] == 0 and c["cpu_s_per_step"] is None
    why = _training(0, trained=False)["reason"]
    assert c["untrained_reasons"] == {20: why, 21: why}
    assert "Untrained in every seed" in doc["conclusion"] and "choice with `mismatched_prompt`" in doc["conclusion"]
    assert "partial_prompt`" not in doc["conclusion"].split("Untrained in every seed")[1]
    assert doc["costs"]["partial_prompt|numeric"]["cpu_s_per_step"] == pytest.approx(9.0)
    assert doc["costs"]["partial_prompt|numeric"]["per_seed"][21] == {"steps": 2, "wall_s": 10.0, "cpu_s": 18.0,
                                                                       "cpu_s_per_step": 9.0}
    md = D.markdown(doc, plan)
    assert "SMOKE" in md and "untrained in seeds [20, 21]" in md and "| numeric | base | 0.500 | 0.000 |" in md
    # an arm untrained in every seed planned nothing the log could count: the table says so, not "0 / 0"
    assert "| mismatched_prompt (untrained in seeds [20, 21]: no pair kept) | choice | none trained |" in md
    assert "| mismatched_prompt | choice | 21 | axolotl_mipo.errors.MIPODataError: no usable pairs" in md
    assert "20: 9.0, 21: 9.0" in md
    # 2 seeds x 2 tasks x (3 evaluations + 2 trainings, an untrained arm's process included), each stage's own
    assert doc["stage_totals"] == {"wall_s": pytest.approx(4 * (3 * 1.0 + 2 * 12.0)),
                                   "cpu_s": pytest.approx(4 * (3 * 2.0 + 2 * 20.0))}


def test_an_arm_whose_pairs_are_all_dropped_is_recorded_untrained_and_other_failures_raise(monkeypatch, tmp_path):
    from axolotl_mipo.pipeline import builder

    plan = R.load_plan(PLAN, smoke=True)
    arm = plan["arms"][0]
    src = Path(builder.__file__).read_text()
    assert R.NO_PAIRS in src  # the message the runner recognises is the pipeline's own

    def fail(msg, error="MIPODataError"):
        def train_arm(*a, **k):
            raise RuntimeError(f"axolotl train failed (1); see log:\n... {error}: {msg}\n"
                               + "Traceback (most recent call last):\n  accelerate ...\n" * 20)
        return train_arm

    args = (tmp_path / "arm", plan, arm, "choice", 20, tmp_path, tmp_path / "t.jsonl", tmp_path / "s.jsonl",
            tmp_path / "cache", 1)
    monkeypatch.setattr(R, "train_arm", fail("no usable pairs: 8 planned, 0 had an empty response and 8 identical"))
    t = R.train_task_arm(*args)
    assert t["trained"] is False and t["adapter"] is None and "identical" in t["reason"]
    from axolotl_mipo.pairing import strategies

    assert R.NO_DISTINCT_RESPONSES in Path(strategies.__file__).read_text()
    monkeypatch.setattr(R, "train_arm", fail(
        "pairing strategy 'mismatched_prompt' never pairs two identical responses, but the response of row 0 "
        "('The answer is: A') was generated for 96 of 96 rows, more than half", error="MIPOStrategyError"))
    t = R.train_task_arm(*args)
    assert t["trained"] is False and t["adapter"] is None
    assert t["reason"].startswith("... MIPOStrategyError: pairing strategy") and "96 of 96 rows" in t["reason"]
    monkeypatch.setattr(R, "train_arm", fail("CUDA out of memory"))
    with pytest.raises(RuntimeError, match="out of memory"):
        R.train_task_arm(*args)
