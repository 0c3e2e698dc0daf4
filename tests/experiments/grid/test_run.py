"""experiments/grid/run.py: the plan it reads, its statistics and decision rule, and a one-seed two-arm smoke run."""

import json
from pathlib import Path

import pytest

from experiments.grid import run as G
from experiments.harness import check_out

PLAN = Path(G.__file__).resolve().parent / "PLAN.md"


def test_the_committed_plan_holds_the_sizes_the_issue_asks_for():
    full = G.load_plan(PLAN)
    assert len(full["seeds"]) >= 5
    assert full["task"]["users"] * full["task"]["heldout_per_user"] * len(full["seeds"]) >= 256
    assert set(full["strategies"]) == {"drop_context", "swap_context", "nearest_context", "mix_drop_swap"}
    assert full["losses"] == ["dpo", "rmipo", "perce"] and len(full["arms"]) == 12
    mix = full["strategies"]["mix_drop_swap"]["strategy"]
    assert [(c["name"], c["weight"]) for c in mix] == [("drop_context", 0.5), ("swap_context", 0.5)]
    quick = G.load_plan(PLAN, "quick")
    smoke = G.load_plan(PLAN, "smoke")
    assert quick["mode"] == "quick" and len(quick["seeds"]) == 1 and len(quick["arms"]) == 2
    assert len(smoke["seeds"]) == 1 and len(smoke["arms"]) == 2
    assert smoke["training"]["lora_r"] == full["training"]["lora_r"]  # overrides merge, they do not replace


def test_plan_errors_and_the_resume_guard(tmp_path):
    bad = tmp_path / "PLAN.md"
    bad.write_text("# no settings\n")
    with pytest.raises(SystemExit, match="Settings"):
        G.load_plan(bad)
    text = PLAN.read_text().replace("arms: [drop_context/dpo, swap_context/dpo]", "arms: [drop_context/kto]")
    bad.write_text(text)
    with pytest.raises(SystemExit, match="drop_context/kto"):
        G.load_plan(bad, "quick")
    check_out(tmp_path / "o", G.load_plan(PLAN, "smoke"))
    check_out(tmp_path / "o", G.load_plan(PLAN, "smoke"))
    with pytest.raises(SystemExit, match="different plan"):
        check_out(tmp_path / "o", G.load_plan(PLAN, "quick"))


def _fake_results(plan, effect):
    """Per-row figures where arm 'a' raises every primary metric by ``effect`` on every row."""
    results = {}
    for s in plan["seeds"]:
        base = {m: [0.0, 1.0] * 20 for m in plan["primary"]}
        arms = {}
        for arm in plan["arms"]:
            shift = effect.get(arm, 0.0)
            per_row = {m: [v + shift + 0.01 * ((i + s) % 3 - 1) for i, v in enumerate(vals)]
                       for m, vals in base.items()}
            arms[arm] = {"figures": {}, "per_row": per_row}
        results[s] = {"base": {"figures": {}, "per_row": base}, "arms": arms}
    return results


def test_summary_pairs_rows_applies_holm_and_the_decision_rule():
    plan = G.load_plan(PLAN)
    # a 2 x 2 corner of the grid keeps the pure-Python bootstrap quick; 1000 resamples: smallest p 0.001
    plan["strategies"] = {k: plan["strategies"][k] for k in ("drop_context", "swap_context")}
    plan["losses"] = ["dpo", "perce"]
    plan["arms"] = G.arm_names(plan)
    plan["secondary"] = []
    plan["statistics"]["resamples"] = 1000
    results = _fake_results(plan, {"swap_context/dpo": 0.2, "drop_context/perce": -0.2})
    out = G.summarize(results, plan)
    e = out["effects"]["swap_context/dpo|mi_mean"]
    assert e["mean"] == pytest.approx(0.2, abs=1e-3) and e["ci"][0] > 0 and e["p_holm"] <= 0.05
    assert len(e["per_seed"]) == 5 and e["per_seed"][0] == pytest.approx(0.2, abs=0.01)
    assert out["verdicts"]["swap_context/dpo"]["verdict"] == "helps"
    assert out["verdicts"]["drop_context/perce"]["verdict"] == "hurts"
    assert out["verdicts"]["drop_context/dpo"]["verdict"] == "no detectable effect"
    # family A: 4 arms x 3 primary metrics; family B: (swap - drop) x 2 losses + (perce - dpo) x 2 strategies, x 3
    assert sum("p_holm" in v for v in out["effects"].values()) == 12
    assert len(out["contrasts"]) == 12
    c = out["contrasts"]["swap_context/dpo - drop_context/dpo|accuracy@K4"]
    assert c["mean"] == pytest.approx(0.2, abs=1e-3) and c["p_holm"] <= 0.05
    md = G.markdown(out, plan, results, 1.0, 1.0)
    assert "| swap_context/dpo | helps |" in md and "No LLM judge" in md


@pytest.mark.e2e
def test_smoke_run_one_seed_two_arms_resumes_from_its_stages(tmp_path, run_study):
    out = tmp_path / "grid"
    args = ("--plan", str(PLAN), "--out", str(out), "--smoke")
    run_study("experiments.grid.run", *args)
    doc = json.loads((out / "grid.json").read_text())
    assert set(doc["verdicts"]) == {"drop_context/dpo", "swap_context/rmipo"}
    for arm in doc["verdicts"]:
        for m in ("mi_mean", "accuracy@K4", "pref_accuracy_with_context"):
            assert doc["effects"][f"{arm}|{m}"]["ci"][0] is not None
    assert (out / "forest.png").stat().st_size > 0 and "smoke run" in (out / "table.md").read_text()
    # the two arms shared one generation cache: one folder, the chosen responses generated once
    caches = list((out / "seed0" / "mipo_cache").iterdir())
    assert len(caches) == 1
    # resumable: a lost stage is redone from what is on disk (the adapter is not retrained)
    (out / "seed0" / "arm-swap_context-rmipo.json").unlink()
    (out / "seed0" / "done").unlink()
    run_study("experiments.grid.run", *args)
    worker = (out / "seed0" / "worker.log").read_text()
    assert "reusing" in worker and worker.count("axolotl train") == 2
    assert json.loads((out / "grid.json").read_text())["effects"].keys() == doc["effects"].keys()
