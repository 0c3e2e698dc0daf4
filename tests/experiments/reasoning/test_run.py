"""experiments/reasoning/run.py --smoke end to end: both arms on both tasks on the tiny model, then a resume."""

import json
from pathlib import Path

import pytest

from experiments.reasoning import run as R

PLAN = Path(R.__file__).resolve().parent / "PLAN.md"


def _stage_files(out: Path) -> dict[str, int]:
    keep = [p for p in out.rglob("*") if p.is_file() and (p.suffix == ".json" or p.name.endswith(".safetensors"))]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in keep if "seed" in str(p.relative_to(out))}


@pytest.mark.e2e
def test_smoke_run_trains_both_arms_on_both_tasks_reports_and_resumes(run_study, tmp_path):
    out = tmp_path / "reasoning"
    args = ("--plan", str(PLAN), "--out", str(out), "--smoke", "--threads", "1")
    run_study("experiments.reasoning.run", *args)
    doc = json.loads((out / "report.json").read_text())
    assert doc["plan"]["mode"] == "smoke" and doc["seeds"] == [20]
    assert doc["heldout"] == {"numeric": 8, "choice": 8}
    assert len(doc["family_a"]) == 8 and len(doc["family_b"]) == 4
    assert set(doc["verdicts"].values()) <= {"improves", "harms", "indistinguishable"}
    for task in ("numeric", "choice"):
        d = out / "seed20" / task
        train = [json.loads(x) for x in (d / "train.jsonl").read_text().splitlines()]
        held = [json.loads(x) for x in (d / "heldout.jsonl").read_text().splitlines()]
        shots = [json.loads(x) for x in (out / f"exemplars_{task}.jsonl").read_text().splitlines()]
        qs = [r["question"] for r in train + held + shots]
        assert len(qs) == len(set(qs)) == 8 + 8 + 3  # training, held-out and exemplars never share a question
        base = json.loads((d / "base.json").read_text())
        assert len(base["per_row"]["accuracy"]) == 8 and base["gold"]
        for arm in ("mismatched_prompt", "partial_prompt"):
            t = json.loads((d / f"{arm}.train.json").read_text())
            c = doc["costs"][f"{arm}|{task}"]
            if t["trained"]:
                assert Path(t["adapter"], "adapter_model.safetensors").exists() and c["steps"] == 2
                cfg = (d / arm / "mipo.yml").read_text()
                assert "few_shot_path" in cfg and f"strategy: {arm}" in cfg
            else:
                assert c["untrained_seeds"] == [20]
    assert "SMOKE" in (out / "table.md").read_text()

    before = _stage_files(out)
    again = run_study("experiments.reasoning.run", *args)
    log = again.stdout + again.stderr
    assert "axolotl train" not in log and "reusing" in log
    assert _stage_files(out) == before  # nothing recomputed
    assert json.loads((out / "report.json").read_text())["verdicts"] == doc["verdicts"]
