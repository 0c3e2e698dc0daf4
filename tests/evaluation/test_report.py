"""Evaluation reports: summaries over runs, the written files, and no matplotlib."""

from __future__ import annotations

import json
import math
import random
import sys

import pytest

from axolotl_mipo.evaluation import metrics as M
from axolotl_mipo.evaluation.report import EvalRun, summarize, write_report

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)


def _runs():
    rng = random.Random(0)
    runs = []
    for label, shift in (("before", 0.0), ("after", 0.5)):
        for seed in (0, 1):
            runs.append(EvalRun(
                label=label, seed=seed,
                figures={"mi_mean": shift + 0.1 * seed, "rouge_l": 0.3 + shift / 10, "self_bleu": float("nan")},
                mi_per_row=[rng.gauss(shift, 1) for _ in range(50)],
                accuracy_per_k={2: 0.5 + shift / 2, 4: 0.25 + shift / 2},
                extra={"judge": M.judge_tally(["win", "tie"])},
            ))
    return runs


def test_summary_mean_and_spread():
    s = summarize(_runs())
    assert s["after"]["mi_mean"]["mean"] == pytest.approx(0.55)
    assert s["after"]["mi_mean"]["std"] == pytest.approx(math.sqrt(0.005))
    assert s["before"]["accuracy@K4"]["mean"] == 0.25
    assert s["before"]["self_bleu"]["mean"] is None and s["before"]["self_bleu"]["n"] == 0


def test_write_report(tmp_path):
    pytest.importorskip("matplotlib")
    paths = write_report(tmp_path, _runs(), title="demo", notes=["ties count as misses"])
    data = json.loads(paths["json"].read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert data["summary"]["after"]["rouge_l"]["mean"] == pytest.approx(0.35)
    assert data["runs"][0]["extra"]["judge"]["ties"] == 1
    assert sorted(data["plots"]) == ["accuracy_per_k.png", "mi_hist.png"]
    for name in ("mi_hist", "accuracy_per_k"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "| figure | before | after | Δ (after − before) |" in md
    assert "± " in md and "ties count as misses" in md


def test_report_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    paths = write_report(tmp_path, _runs()[:1])
    data = json.loads(paths["json"].read_text())
    assert data["plots"] == [] and any("matplotlib" in n for n in data["notes"])
    assert not list(tmp_path.glob("*.png"))
