"""The losses-and-rounds study's decision rule, Holm families, costs and recommendation on hand-made numbers."""

from pathlib import Path

import pytest

from experiments.losses_rounds import decide as D
from experiments.losses_rounds import run as R

PLAN = Path(R.__file__).resolve().parent / "PLAN.md"
PRIMARY = ["mi", "acc@K4", "pref_accuracy"]


def _e(mean, p_holm):
    return {"mean": mean, "p_holm": p_holm}


@pytest.mark.parametrize("entries, verdict", [
    ({"mi": _e(0.2, 0.01), "acc@K4": _e(0.0, 1.0), "pref_accuracy": _e(0.0, 1.0)}, "beats"),
    ({"mi": _e(0.0, 1.0), "acc@K4": _e(0.1, 0.05), "pref_accuracy": _e(0.0, 1.0)}, "beats"),  # p = alpha counts
    # a win on pref_accuracy alone is not a win: the rule asks for mi or acc@K4
    ({"mi": _e(0.2, 0.2), "acc@K4": _e(0.1, 0.3), "pref_accuracy": _e(0.1, 0.001)}, "indistinguishable"),
    # up on mi but down on pref_accuracy: neither beats nor worse
    ({"mi": _e(0.2, 0.01), "acc@K4": _e(0.0, 1.0), "pref_accuracy": _e(-0.1, 0.01)}, "indistinguishable"),
    ({"mi": _e(-0.2, 0.01), "acc@K4": _e(0.1, 0.5), "pref_accuracy": _e(0.0, 1.0)}, "worse"),
    ({"mi": _e(-0.2, 0.06), "acc@K4": _e(-0.1, 0.07), "pref_accuracy": _e(None, None)}, "indistinguishable"),
])
def test_the_plans_rule_for_one_contrast(entries, verdict):
    assert D.classify(entries, PRIMARY, 0.05) == verdict


def test_the_committed_plan_is_read_as_the_issue_asks(tmp_path):
    plan = R.load_plan(PLAN)
    assert plan["seeds"] == [10, 11, 12] and plan["strategy"] == "drop_context"
    p = plan["personas"]
    assert p["heldout_users"] * p["queries_per_user"] * len(plan["seeds"]) >= 144
    assert [a["name"] for a in plan["arms"]] == ["dpo", "rmipo", "perce", "rmipo+perce", "dpo_round2"]
    assert plan["contrasts"][-1] == ["dpo_round2", "dpo"] and len(plan["contrasts"]) * len(plan["primary"]) == 12
    assert "max_steps" not in plan["training"]
    smoke = R.load_plan(PLAN, smoke=True)
    assert smoke["mode"] == "smoke" and smoke["seeds"] == [10] and len(smoke["arms"]) == 5
    assert smoke["training"]["lora_r"] == plan["training"]["lora_r"] and smoke["training"]["max_steps"] == 2
    bad = tmp_path / "PLAN.md"
    bad.write_text(PLAN.read_text().replace("{name: dpo_round2, loss: dpo, round: 2, from: dpo}",
                                            "{name: dpo_round2, loss: dpo, round: 2, from: perce}"))
    with pytest.raises(SystemExit, match="dpo_round2 .*'perce'"):
        R.load_plan(bad)
    bad.write_text(PLAN.read_text().replace("  - [perce, dpo]", "  - [perce, kto]"))
    with pytest.raises(SystemExit, match="kto"):
        R.load_plan(bad)


def _plan(resamples=1000):
    plan = R.load_plan(PLAN)
    plan["secondary"] = ["acc@K2"]
    plan["bootstrap"]["resamples"] = resamples  # smallest p 0.001: 12 Holm tests can pass at 0.05
    return plan


def _results(plan, shift: dict, cpu_per_step: dict, seeds=(10, 11, 12), n=24):
    """Per-row values where arm X moves metric m by ``shift[X][m]`` on every row (a pair: on even, odd rows)."""
    results = {}
    for s in seeds:
        base = {m: [float((i + s) % 2) for i in range(n)] for m in ("mi", "acc@K4", "acc@K2")}
        base_pairs = [float(i % 2) for i in range(n)]

        def moved(arm, m, vals, s=s):
            d = shift.get(arm, {}).get(m, 0.0)
            d = d if isinstance(d, tuple) else (d, d)
            return [v + d[i % 2] + 0.01 * ((i + s) % 3 - 1) for i, v in enumerate(vals)]

        arms, training = {}, {}
        for a in plan["arms"]:
            name = a["name"]
            arms[name] = {"figures": {}, "per_row": {m: moved(name, m, v) for m, v in base.items()},
                          "per_pair": {"pref_accuracy": moved(name, "pref_accuracy", base_pairs)},
                          "wall_s": 5.0, "cpu_s": 4.0}
            stages = {"train": {"wall_s": 12.0 * cpu_per_step[name], "cpu_s": 10.0 * cpu_per_step[name]}}
            if a.get("round", 1) != 1:
                stages["extra_round"] = {"wall_s": 30.0, "cpu_s": 25.0}
            training[name] = {"log": {"logged_steps": 10, "train_runtime_s": 8.0}, "stages": stages, "measured": True}
        results[s] = {"base": {"figures": {}, "per_row": base, "per_pair": {"pref_accuracy": base_pairs},
                               "pairs": [{}] * n, "wall_s": 3.0, "cpu_s": 2.0},
                      "arms": arms, "training": training}
    return results


CPS = {"dpo": 1.0, "rmipo": 0.9, "perce": 1.2, "rmipo+perce": 1.0, "dpo_round2": 1.0}


def test_families_are_holm_corrected_separately_and_costs_are_per_step():
    plan = _plan()
    results = _results(plan, {"rmipo": {"mi": 0.3, "acc@K4": 0.3}, "perce": {"mi": -0.3}}, CPS)
    s = D.summarize(results, plan)
    assert len(s["family_c"]) == 12 and len(s["family_a"]) == 15
    assert all("p_holm" in e for e in [*s["family_c"].values(), *s["family_a"].values()])
    assert all("p_holm" not in e for e in s["secondary"].values())
    e = s["family_c"]["rmipo - dpo|acc@K4"]
    assert e["mean"] == pytest.approx(0.3, abs=1e-3) and e["ci"][0] > 0 and e["p_holm"] <= 0.05
    assert len(e["per_seed"]) == 3 and e["per_seed"][0] == pytest.approx(0.3, abs=0.02)
    assert s["verdicts"] == {"rmipo - dpo": "beats", "perce - dpo": "worse", "rmipo+perce - dpo": "indistinguishable",
                             "dpo_round2 - dpo": "indistinguishable"}
    c = D.costs(results, plan)
    assert c["perce"]["cpu_s_per_step"] == pytest.approx(1.2) and c["perce"]["wall_s_per_step"] == pytest.approx(1.44)
    assert c["dpo"]["trainer_wall_s_per_step"] == pytest.approx(0.8)
    assert c["dpo"]["steps"] == 30 and c["dpo_round2"]["extra_round"] == {"wall_s": 90.0, "cpu_s": 75.0}
    assert c["dpo"]["per_seed"][10]["stages"]["evaluation"] == {"wall_s": 5.0, "cpu_s": 4.0}


def test_the_winner_is_recommended_and_a_cheaper_indistinguishable_loss_replaces_it():
    plan = _plan()
    # rmipo+perce and perce both beat dpo; perce by more on acc@K4 (0.31 on average, unevenly), but
    # rmipo+perce (0.30 on every row) cannot be told from it and is cheaper
    results = _results(plan, {"perce": {"acc@K4": (0.6, 0.02)}, "rmipo+perce": {"acc@K4": 0.3}}, CPS)
    doc = D.report(results, plan, 1.0, 1.0)
    rec = doc["recommendation"]
    assert rec["best"] == "perce" and rec["loss"] == "rmipo+perce"
    assert "1.20x" in rec["loss_text"] and "`rmipo+perce` is indistinguishable" in rec["loss_text"]
    assert "rmipo+perce - perce|acc@K4" in rec["exploratory"] and "rmipo - perce|acc@K4" in rec["exploratory"]
    assert not rec["rounds"] and "added nothing detectable" in rec["rounds_text"]
    md = D.markdown(doc, plan, results)
    assert "| perce − dpo | beats |" in md and "Cost (measured in this run)" in md


def test_when_nothing_beats_dpo_it_stays_and_a_winning_round_2_is_recommended():
    plan = _plan()
    results = _results(plan, {"rmipo": {"mi": -0.3}, "dpo_round2": {"mi": 0.3, "acc@K4": 0.2}}, CPS)
    rec = D.report(results, plan, 1.0, 1.0)["recommendation"]
    assert rec["loss"] == "dpo" and rec["best"] is None
    assert rec["loss_verdicts"] == {"rmipo": "worse", "perce": "indistinguishable", "rmipo+perce": "indistinguishable"}
    assert "keep `dpo`" in rec["loss_text"] and "or worse (rmipo)" in rec["loss_text"] and "0.90x" in rec["loss_text"]
    assert rec["rounds"] and "run `axolotl-mipo rounds` with 2 rounds" in rec["rounds_text"]
