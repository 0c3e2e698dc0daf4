#!/usr/bin/env python
"""MIPO's first test on a real model: SmolLM2-135M-Instruct on the CPU, pre-registered.

    python -m experiments.smollm2.run --plan experiments/smollm2/plan.yml --out runs/smollm2
    python -m experiments.smollm2.run --plan experiments/smollm2/plan.yml --out runs/smollm2-quick --quick

The plan (``experiments/smollm2/PLAN.md``, settings in ``plan.yml``) was committed before any result.
Per seed: a persona set (:mod:`experiments.tasks.personas`) split by user; the base model is
evaluated once on the held-out users (plus responses WITHOUT the persona, for preference accuracy);
each arm (a pairing strategy + loss) runs as a real ``axolotl train`` with the plugin, all arms of a
seed sharing one generation cache; then base + adapter is evaluated on the same rows with the same
sampling seed. Every stage writes its JSON under ``OUT/seed<s>/``; a rerun reads finished stages
back (resumable). The end: ``OUT/report.json``, ``OUT/table.md``, ``OUT/proof.png`` with 95%
intervals from a hierarchical bootstrap over seeds and rows, and the pre-registered decision.

``--quick``: one seed, one arm, 8 + 8 users with one query each, 16 new tokens, 2 DPO steps. It
shows the script works end to end; its numbers are not results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

# the project's one statistics module (also the grid's); kept under this name for the tests
from axolotl_mipo.evaluation.stats import hier_bootstrap
from experiments.harness import check_out, cpu_seconds, logger, stage, train_arm
from experiments.harness.persona_eval import (
    PREFS,
    evaluate_personas,
    pair_accuracy,
    persona_base_stage,
    persona_examples,
    preference_pairs,  # noqa: F401 (the study's tests read it here)
)
from experiments.harness.training import plan_train_config as train_config

HERE = Path(__file__).resolve().parent
log = logger("smollm2")


# ------------------------------------------------------------------ plan


def load_plan(path: Path, quick: bool) -> dict:
    plan = yaml.safe_load(path.read_text())
    if quick:
        plan = json.loads(json.dumps(plan))
        plan["seeds"] = plan["seeds"][:1]
        plan["arms"] = plan["arms"][:1]
        plan["personas"] = {"train_users": 8, "heldout_users": 8, "queries_per_user": 1}
        plan["generation"]["max_new_tokens"] = 16
        plan["evaluation"]["max_new_tokens"] = 16
        plan["training"]["max_steps"] = 2
        plan["bootstrap"]["resamples"] = 200
        plan["quick"] = True
    return plan


# ------------------------------------------------------------------ per seed


def evaluate(model, tok, heldout, plan, seed) -> tuple[dict, list[str]]:
    return evaluate_personas(model, tok, heldout, plan["evaluation"], seed)


def base_stage(d: Path, base: Path, heldout, plan, seed, tok) -> dict:
    return persona_base_stage(base, heldout, plan["evaluation"], seed, tok)


def arm_stage(d: Path, base: Path, train_path: Path, heldout, plan, arm, seed, tok, base_res, threads) -> dict:
    from axolotl_mipo.evaluation.evaluate import load_model

    cfg = train_config(plan, arm, seed, base, train_path, d, d.parent / "mipo_cache")
    trained = train_arm(d, cfg, threads, label=f"seed {seed} {arm['name']}")
    model = load_model(str(base), str(trained.adapter), device="cpu", dtype="float32")
    out, _ = evaluate(model, tok, heldout, plan, seed)
    out["per_pair"] = {"pref_accuracy": pair_accuracy(model, tok, persona_examples(heldout), base_res["pairs"],
                                                      plan["evaluation"]["batch_size"])}
    out["training"] = trained.training
    return out


def run_seed(out: Path, base: Path, plan: dict, seed: int, threads: int) -> dict:
    from transformers import AutoTokenizer

    from experiments.harness.persona_eval import persona_seed_rows

    d = out / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    train, heldout = persona_seed_rows(d, plan["personas"], seed)
    tok = AutoTokenizer.from_pretrained(base)
    log(f"seed {seed}: {len(train)} training rows, {len(heldout)} held-out rows; base evaluation")
    base_res = stage(d / "base.json", lambda: base_stage(d, base, heldout, plan, seed, tok))
    arms = {}
    for arm in plan["arms"]:
        arms[arm["name"]] = stage(d / f"{arm['name']}.json", lambda arm=arm: arm_stage(
            d / arm["name"], base, d / "train.jsonl", heldout, plan, arm, seed, tok, base_res, threads))
        a, b = arms[arm["name"]]["per_row"], base_res["per_row"]
        mean = lambda v: sum(v) / len(v) if v else float("nan")  # noqa: E731
        log(f"seed {seed} {arm['name']}: MI {mean(a['mi']):.3f} (base {mean(b['mi']):.3f}), "
            f"acc@K4 {mean(a.get('acc@K4', [])):.3f} (base {mean(b.get('acc@K4', [])):.3f})")
    return {"base": base_res, "arms": arms}


# ------------------------------------------------------------------ statistics


def metric_names(results) -> list[str]:
    first = next(iter(results.values()))["base"]
    return list(first["per_row"]) + list(first["per_pair"])


def _values(res: dict, name: str):
    return res["per_row"].get(name, res.get("per_pair", {}).get(name))


def summarize(results: dict, plan: dict) -> dict:
    b = plan["bootstrap"]
    arms = [a["name"] for a in plan["arms"]]
    summary = {}
    for name in metric_names(results):
        entry = {"base": hier_bootstrap([_values(r["base"], name) for r in results.values()],
                                        b["resamples"], b["level"])}
        for arm in arms:
            entry[arm] = hier_bootstrap([_values(r["arms"][arm], name) for r in results.values()],
                                        b["resamples"], b["level"])
            diffs = [[x - y for x, y in zip(_values(r["arms"][arm], name), _values(r["base"], name))]
                     for r in results.values()]
            entry[f"{arm} - base"] = hier_bootstrap(diffs, b["resamples"], b["level"])
        summary[name] = entry
    return summary


def _cell(t) -> str:
    p, lo, hi = t
    return "n/a" if p is None else f"{p:.3f} [{lo:.3f}, {hi:.3f}]"


def decision(summary: dict, arms: list[str]) -> dict:
    out = {}
    for arm in arms:
        verdicts = {}
        for m in ("mi", "acc@K4"):
            p, lo, hi = summary.get(m, {}).get(f"{arm} - base", (None, None, None))
            verdicts[m] = "n/a" if p is None else "rises" if lo > 0 else "falls" if hi < 0 else "no detectable change"
        out[arm] = {"per_metric": verdicts, "holds": all(v == "rises" for v in verdicts.values())}
    return out


def markdown(summary: dict, plan: dict, verdict: dict, results: dict, wall: float, cpu: float) -> str:
    arms = [a["name"] for a in plan["arms"]]
    head = ["metric", "base", *arms, *(f"{a} − base" for a in arms)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in summary.items():
        lines.append("| " + " | ".join([name, _cell(e["base"]), *(_cell(e[a]) for a in arms),
                                         *(_cell(e[f"{a} - base"]) for a in arms)]) + " |")
    n_rows = sum(len(r["base"]["per_row"]["mi"]) for r in results.values())
    n_pairs = sum(len(r["base"]["pairs"]) for r in results.values())
    text = [f"# MIPO on SmolLM2-135M-Instruct{' (QUICK SMOKE: not a result)' if plan.get('quick') else ''}", "",
            f"{len(results)} seed(s) ({', '.join(map(str, results))}), {n_rows} held-out rows of held-out users in "
            f"all; responses sampled with the persona at temperature {plan['evaluation']['temperature']}, "
            f"{plan['evaluation']['max_new_tokens']} new tokens. mi in nats; acc@K strict (chance 1/K); pref_* = "
            f"share of responses the checkers pass; pref_accuracy over {n_pairs} checker-ordered pairs. "
            f"Point = pooled mean; [95% interval] from a hierarchical bootstrap over seeds and rows "
            f"({plan['bootstrap']['resamples']} resamples).", "", *lines, "",
            "Decision (pre-registered: the arm − base interval above 0 for both mi and acc@K4):", ""]
    for arm, v in verdict.items():
        text.append(f"* {arm}: {'HOLDS' if v['holds'] else 'does not hold'} "
                    f"({', '.join(f'{m}: {s}' for m, s in v['per_metric'].items())})")
    text += ["", "Training (last logged DPO step) and time per seed:", ""]
    for s, r in results.items():
        for arm, a in r["arms"].items():
            t = a.get("training", {})
            text.append(f"* seed {s} {arm}: pairs kept {t.get('pairs_kept')} of {t.get('pairs_planned')}; last step "
                        f"{t.get('last_step')}; train {t.get('wall_s', 0):.0f}s wall / {t.get('cpu_s', 0):.0f} CPU-s; "
                        f"stage {a.get('wall_s', 0):.0f}s")
        text.append(f"* seed {s} base evaluation: {r['base'].get('wall_s', 0):.0f}s wall")
    text.append(f"\nTotal wall time {wall:.0f}s ({cpu:.0f} CPU-seconds, {os.cpu_count()} cores; "
                "wall time depends on the machine's load).")
    return "\n".join(text) + "\n"


def plot(summary: dict, plan: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = ["base", *(a["name"] for a in plan["arms"])]
    panels = [["mi"], [f"acc@K{k}" for k in plan["evaluation"]["k"]], [f"pref_{d}" for d in PREFS] +
              (["pref_accuracy"] if "pref_accuracy" in summary else [])]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), gridspec_kw={"width_ratios": [1, 2, 4]})
    for ax, names in zip(axes, panels):
        names = [n for n in names if n in summary]
        width = 0.8 / len(models)
        for j, m in enumerate(models):
            pts = [summary[n][m] for n in names]
            xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(names))]
            ys = [p[0] if p[0] is not None else 0 for p in pts]
            err = [[max(0, y - (p[1] if p[1] is not None else y)) for y, p in zip(ys, pts)],
                   [max(0, (p[2] if p[2] is not None else y) - y) for y, p in zip(ys, pts)]]
            ax.bar(xs, ys, width, yerr=err, capsize=2, label=m)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.axhline(0, color="black", lw=0.5)
    axes[0].set_ylabel("mean (95% interval, seeds x rows)")
    axes[0].legend(fontsize=8)
    fig.suptitle("MIPO on SmolLM2-135M-Instruct, held-out users" + (" (quick smoke)" if plan.get("quick") else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=str(HERE / "plan.yml"))
    ap.add_argument("--out", default="runs/smollm2")
    ap.add_argument("--model", default="./smollm2-model", help="made here by make-smollm2 when missing")
    ap.add_argument("--quick", action="store_true", help="a smoke of the whole script, not a result")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    os.environ.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    import torch

    from axolotl_mipo.smollm2 import make_smollm2

    torch.set_num_threads(a.threads)
    plan = load_plan(Path(a.plan), a.quick)
    out = Path(a.out).resolve()
    check_out(out, plan)
    base = make_smollm2(Path(a.model).resolve())
    start, cpu0 = time.time(), cpu_seconds()
    results = {s: run_seed(out, base, plan, s, a.threads) for s in plan["seeds"]}
    summary = summarize(results, plan)
    verdict = decision(summary, [x["name"] for x in plan["arms"]])
    wall, cpu = time.time() - start, cpu_seconds() - cpu0
    md = markdown(summary, plan, verdict, results, wall, cpu)
    (out / "table.md").write_text(md)
    plotted = plot(summary, plan, out / "proof.png")
    (out / "report.json").write_text(json.dumps({
        "plan": plan, "summary": {m: {k: dict(zip(("point", "lo", "hi"), v)) for k, v in e.items()}
                                  for m, e in summary.items()},
        "decision": verdict, "wall_s": wall, "cpu_s": cpu, "cores": os.cpu_count(),
        "figures": {s: {"base": r["base"]["figures"], **{k: v["figures"] for k, v in r["arms"].items()}}
                    for s, r in results.items()},
        "training": {s: {k: v.get("training") for k, v in r["arms"].items()} for s, r in results.items()},
        "stage_wall_s": {s: {"base": r["base"].get("wall_s"), **{k: v.get("wall_s") for k, v in r["arms"].items()}}
                         for s, r in results.items()},
    }, indent=1, default=str))
    print(md)
    print(f"wrote {out / 'table.md'}, {out / 'report.json'}" + (f", {out / 'proof.png'}" if plotted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
