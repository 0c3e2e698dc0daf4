"""experiments/losses_rounds/run.py --smoke end to end: five arms (round 2 too) on the tiny model, then a resume."""

import json
from pathlib import Path

import pytest

from experiments.losses_rounds import run as R

PLAN = Path(R.__file__).resolve().parent / "PLAN.md"


def _stage_files(out: Path) -> dict[str, int]:
    """Every stage JSON, adapter and merged weight file under the seed's folder, with its modification time."""
    keep = [p for p in out.rglob("*") if p.is_file() and (p.suffix == ".json" or p.name.endswith(".safetensors"))]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in keep if "seed" in str(p.relative_to(out))}


@pytest.mark.e2e
def test_smoke_run_trains_every_arm_reports_contrasts_and_costs_and_resumes(run_study, tmp_path):
    out = tmp_path / "lr"
    args = ("--plan", str(PLAN), "--out", str(out), "--smoke", "--threads", "1")
    run_study("experiments.losses_rounds.run", *args)
    doc = json.loads((out / "report.json").read_text())
    arms = ["dpo", "rmipo", "perce", "rmipo+perce", "dpo_round2"]
    assert doc["plan"]["mode"] == "smoke" and doc["seeds"] == [10]
    assert {k.split("|")[0] for k in doc["family_a"]} == set(arms) and len(doc["family_a"]) == 15
    assert set(doc["verdicts"]) == {"rmipo - dpo", "perce - dpo", "rmipo+perce - dpo", "dpo_round2 - dpo"}
    assert all(v in ("beats", "worse", "indistinguishable") for v in doc["verdicts"].values())
    assert len(doc["family_c"]) == 12 and all("p_holm" in e for e in doc["family_c"].values())
    assert doc["recommendation"]["loss_text"] and doc["recommendation"]["rounds_text"]
    for arm in arms:
        c = doc["costs"][arm]
        assert c["steps"] == 2 and c["cpu_s_per_step"] > 0 and c["wall_s_per_step"] > 0 and c["measured"]
        assert c["per_seed"]["10"]["stages"]["evaluation"]["wall_s"] > 0
    assert set(doc["costs"]["dpo"]["per_seed"]["10"]["stages"]) >= {"generate", "train"}
    r2 = doc["costs"]["dpo_round2"]["per_seed"]["10"]["stages"]
    assert {"merge", "generate", "train", "extra_round"} <= set(r2) and doc["costs"]["dpo_round2"]["extra_round"]
    seed = out / "seed10"
    t1, t2 = (json.loads((seed / f"{a}.train.json").read_text()) for a in ("dpo", "dpo_round2"))
    assert t1["model_in"] == str(out / "tiny-model") and t2["model_in"] == t1["merged"]  # round 2 starts from round 1
    assert (seed / "rounds-dpo" / "round_2" / "pairs.jsonl").exists()
    assert "SMOKE" in (out / "table.md").read_text()

    before = _stage_files(out)
    again = run_study("experiments.losses_rounds.run", *args)
    log = again.stdout + again.stderr
    assert "axolotl train" not in log and "generating pairs" not in log and "reusing" in log
    assert _stage_files(out) == before  # nothing recomputed
    assert json.loads((out / "report.json").read_text())["verdicts"] == doc["verdicts"]
