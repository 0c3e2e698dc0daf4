"""experiments/popi/run.py: its statistics on known per-row figures, and a one-seed smoke run that resumes."""

import json

import pytest

from experiments.popi import run as PP


def _fake(seeds, shift):
    """Per-row figures where the trained summaries add ``shift`` to the reward and MIPO adds it to every metric."""
    res = {}
    for s in seeds:
        base = [0.0, 1.0] * 10
        noisy = [v + 0.01 * ((i + s) % 3 - 1) for i, v in enumerate(base)]

        def ev(add, noisy=noisy):
            return {"per_row": {m: [v + add for v in noisy] for m in PP.MIPO_METRICS}}

        res[s] = {"summaries": {"zero_shot": {"per_row": {"reward": base, "accuracy": base}},
                                "trained": {"per_row": {"reward": [v + shift for v in base], "accuracy": base}}},
                  "mipo": {"zero_shot": {"before": ev(0.0), "after": ev(0.0)},
                           "trained": {"before": ev(0.0), "after": ev(shift)}}}
    return res


def test_summary_pairs_rows_across_summarizers_and_models(monkeypatch):
    monkeypatch.setattr(PP, "RESAMPLES", 500)
    out = PP.summarize(_fake([0, 1, 2], 0.3))
    r = out["summaries"]["reward"]["trained_minus_zero_shot"]
    assert r["mean"] == pytest.approx(0.3) and r["ci"][0] > 0 and r["p"] <= 0.01
    assert out["summaries"]["accuracy"]["trained_minus_zero_shot"]["mean"] == 0.0
    eff = out["mipo"]["mi_mean"]
    assert eff["trained"]["effect"]["mean"] == pytest.approx(0.3) and eff["trained"]["effect"]["p"] <= 0.01
    assert eff["zero_shot"]["effect"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert out["mipo_trained_vs_zero_shot"]["accuracy@K4"]["mean"] == pytest.approx(0.3)
    assert out["generator_with_summaries"]["mi_mean"]["trained_minus_zero_shot"]["mean"] == pytest.approx(0.0)
    md = PP.table(out, [0, 1, 2])
    assert "| POPI reward (beta 0.01) |" in md and "+0.300" in md


@pytest.mark.e2e
def test_smoke_run_measures_both_halves_and_resumes(tmp_path, run_study):
    out = tmp_path / "popi"
    args = ("--smoke", "--seeds", "0", "--threads", "1", "--out", str(out))
    run_study("experiments.popi.run", *args)
    doc = json.loads((out / "results.json").read_text())
    assert doc["smoke"] and set(doc["summary"]["mipo"]) >= {"mi_mean", "accuracy@K2", "pref_accuracy_with_context"}
    seed = out / "seed-0"
    for kind in PP.KINDS:
        rows = [json.loads(x) for x in (seed / f"heldout-{kind}.jsonl").read_text().splitlines()]
        assert len(rows) == 2 * 4 and all(r["human_chosen"] and r["preferences"] for r in rows)
        assert (seed / f"mipo-{kind}" / "mipo" / "adapter_model.safetensors").exists()
    cfg = (seed / "mipo-trained" / "mipo.yml").read_text()
    assert "summarizer:" in cfg and "preference_summary" in cfg
    assert "summarizer:" not in (seed / "mipo-zero_shot" / "mipo.yml").read_text()
    # resumable: a lost evaluation is redone from the adapters on disk, nothing is retrained
    (seed / "mipo-trained" / "eval-mipo.json").unlink()
    proc = run_study("experiments.popi.run", *args)
    assert "axolotl train" not in proc.stderr and "reusing" in proc.stderr
    assert (seed / "mipo-trained" / "eval-mipo.json").exists()
