"""The SmolLM2 proof's statistics and pairs (the run itself is python -m experiments.smollm2.run --quick)."""

from pathlib import Path

import pytest

from experiments.harness import check_out
from experiments.smollm2 import run as PS

PLAN = Path(PS.__file__).resolve().parent / "plan.yml"


def test_hierarchical_bootstrap_interval_covers_the_pooled_mean_and_widens_with_seed_spread():
    tight = PS.hier_bootstrap([[1.0, 1.2, 0.8] * 10, [1.1, 0.9, 1.0] * 10], 500, 0.95)
    spread = PS.hier_bootstrap([[0.0] * 30, [2.0] * 30], 500, 0.95)
    assert tight[1] <= tight[0] <= tight[2] and tight[2] - tight[1] < 0.2
    assert spread[0] == pytest.approx(1.0) and spread[2] - spread[1] > 1.0  # the seeds disagree: a wide interval
    assert PS.hier_bootstrap([[], [float("nan")]], 10, 0.95) == (None, None, None)


def test_decision_needs_both_headline_intervals_above_zero():
    summary = {"mi": {"a - base": (0.3, 0.1, 0.5), "b - base": (0.3, 0.1, 0.5)},
               "acc@K4": {"a - base": (0.1, 0.02, 0.2), "b - base": (0.1, -0.05, 0.2)}}
    d = PS.decision(summary, ["a", "b"])
    assert d["a"]["holds"] and not d["b"]["holds"]
    assert d["b"]["per_metric"]["acc@K4"] == "no detectable change"


def test_preference_pairs_only_where_the_checkers_order_the_responses():
    prefs = {"language": "en", "format": "prose", "max_words": 20, "topic": "cooking", "register": "formal"}
    rows = [{"preferences": prefs}] * 3
    with_c = ["Cook a simple meal for the family.", "hello", "same text"]
    without = ["- a\n- b!", "hello", "same text"]
    pairs = PS.preference_pairs(rows, with_c, without)
    assert [p["row"] for p in pairs] == [0]
    assert pairs[0]["better"] == with_c[0] and pairs[0]["better_is_with_persona"]


def test_quick_plan_is_one_seed_one_arm(tmp_path):
    plan = PS.load_plan(PLAN, quick=True)
    full = PS.load_plan(PLAN, quick=False)
    assert plan["quick"] and len(plan["seeds"]) == 1 and len(plan["arms"]) == 1
    assert len(full["seeds"]) >= 3 and {a["strategy"] for a in full["arms"]} == {
        "drop_context", "swap_context", "nearest_context"}
    assert full["personas"]["heldout_users"] * full["personas"]["queries_per_user"] * len(full["seeds"]) >= 128
    check_out(tmp_path, plan)
    with pytest.raises(SystemExit, match="different plan"):
        check_out(tmp_path, full)
