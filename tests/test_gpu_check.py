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


def test_memory_estimate_terms():
    from axolotl_mipo.memory import GIB, SHAPES, estimate, table

    s8 = SHAPES["meta-llama/Llama-3.1-8B-Instruct"]
    e = estimate(s8, seq=2048, micro_batch=2)
    assert 5.0 * GIB < e["weights"] < 6.5 * GIB  # QLoRA 8B: about 0.52 byte per linear weight + bf16 embeddings
    assert e["peak"] == pytest.approx(e["static"] + e["activations"] + e["policy_logits"]
                                      + max(v for k, v in e.items() if k == "backward" or k.startswith("extra_")))
    longer = estimate(s8, seq=4096, micro_batch=2)
    assert longer["peak"] > e["peak"] and longer["weights"] == e["weights"]
    assert "extra_reference" in e and "extra_reference" not in estimate(s8, seq=2048, micro_batch=2, loss="rmipo")
    assert {"extra_rmipo", "extra_perce", "extra_reference"} == {
        k for k in estimate(s8, seq=2048, micro_batch=2, loss="rmipo+perce", rmipo_form="dpo") if k.startswith("extra_")}
    no_ckpt = estimate(s8, seq=2048, micro_batch=2, gradient_checkpointing=False)
    assert no_ckpt["activations"] > 5 * e["activations"]
    rows = table([str(REPO / "example_configs" / "mipo-llama.yml")])
    assert {(r["model"], r["seq"], r["loss"]) for r in rows} >= {
        ("meta-llama/Llama-3.2-3B-Instruct", 2048, "rmipo+perce"), ("meta-llama/Llama-3.1-8B-Instruct", 1024, "dpo")}
    assert all(r["fits_24gb"] or not r["fits_16gb"] for r in rows)
