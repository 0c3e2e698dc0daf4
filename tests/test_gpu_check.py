"""The GPU check cannot rot while no GPU is lent: its --smoke run takes the same code paths on the CPU; and the
memory estimate it is judged against."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.gpu_check
def test_gpu_check_smoke_runs_every_measurement_kind(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # dpo and rmipo+perce: every loss hook (the reference forward, RMiPO's and PerCE's extra forwards)
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--json", str(out), "--workdir",
         str(tmp_path / "w"), "--only", "train/smoke/seq256/dpo", "train/smoke/seq256/rmipo+perce", "generate",
         "vllm"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    res = json.loads(out.read_text())["measurements"]
    assert set(res) == {"train/smoke/seq256/dpo", "train/smoke/seq256/rmipo+perce",
                        "generate/smoke/bf16/one-copy", "vllm/smoke"}, res
    for loss in ("dpo", "rmipo+perce"):
        r = res[f"train/smoke/seq256/{loss}"]
        assert r["steps"] == 3 and r["batch_shape"][0] == 4 and r["final_loss"] is not None
        assert r["rows"] == 8
        # the estimate of the step's memory against glibc's live bytes during the steps (CPU, fp32, no 4-bit)
        assert 0.5 <= r["estimate_mib"] / r["cpu_train_peak_delta_mib"] <= 2.0, r
    assert res["generate/smoke/bf16/one-copy"]["tokens"] > 0
    assert res["vllm/smoke"]["engine_shut_down"] is True
    assert "measurement" in proc.stdout and "train/smoke/seq256/rmipo+perce" in proc.stdout.split("measurement")[-1]


def test_budget_skips_what_does_not_fit(tmp_path):
    """A zero budget records every measurement as skipped (the JSON still says what was planned)."""
    out = tmp_path / "g.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--budget-s", "0",
                           "--json", str(out), "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())["measurements"]
    assert res and all("skipped" in r for r in res.values())
