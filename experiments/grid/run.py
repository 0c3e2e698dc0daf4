#!/usr/bin/env python
"""Which strategy and which loss? The pre-registered grid on the unique-query task, on the CPU.

    python -m experiments.grid.run --plan experiments/grid/PLAN.md --out runs/grid           # the grid
    python -m experiments.grid.run --plan experiments/grid/PLAN.md --out runs/grid-quick --quick

The settings are the YAML block of the plan (``## Settings``); ``--quick`` and ``--smoke`` apply the
plan's ``quick`` / ``smoke`` overrides (their figures are not results). Per seed, in one worker
process (``--jobs`` seeds side by side, one thread each):

1. the task (:func:`experiments.tasks.synthetic_unique.make_unique_task`), split per user;
2. one weakly personalized base model (:func:`experiments.harness.train_weak_base`), evaluated once on
   the held-out rows;
3. every arm (strategy x loss) as a real ``axolotl train`` with the plugin; all arms of a seed share
   one generation cache, so each chosen and each rejected prompt is generated once;
4. base + adapter evaluated on the same rows with the same sampling seed (paired per row).

Each stage writes a JSON under ``OUT/seed<s>/``; a rerun (after a kill) reads finished stages back
and starts the unfinished one again (an interrupted ``axolotl train`` regenerates nothing the cache
holds). ``OUT/plan.json`` guards against resuming with another plan. At the end: ``OUT/grid.json``
(every figure, per seed and pooled, intervals, p-values, Holm, verdicts), ``OUT/table.md`` and
``OUT/forest.png``. Statistics: :mod:`axolotl_mipo.evaluation.stats`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import time
from pathlib import Path

import yaml

from experiments.harness import (
    check_out,
    cpu_seconds,
    evaluate_synthetic,
    logger,
    mipo_config,
    run_seed_workers,
    stage,
    synthetic_per_row,
    train_arm,
    train_weak_base,
    worker_command,
    worker_threads,
)

HERE = Path(__file__).resolve().parent
log = logger("grid")


# ------------------------------------------------------------------ plan


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def arm_names(plan: dict) -> list[str]:
    return [f"{s}/{loss}" for loss in plan["losses"] for s in plan["strategies"]]


def load_plan(path: Path, mode: str = "full") -> dict:
    """The YAML block under ``## Settings`` of the plan, with the ``quick`` / ``smoke`` overrides applied."""
    text = Path(path).read_text(encoding="utf-8")
    m = re.search(r"^## Settings\s*$.*?^```yaml\s*$(.*?)^```\s*$", text, re.DOTALL | re.MULTILINE)
    if not m:
        raise SystemExit(f"{path}: no ```yaml block under a '## Settings' heading")
    raw = yaml.safe_load(m.group(1))
    plan = {k: v for k, v in raw.items() if k not in ("quick", "smoke")}
    arms = arm_names(plan)
    if mode != "full":
        if mode not in raw:
            raise SystemExit(f"{path}: the settings have no '{mode}' section")
        over = dict(raw[mode])
        arms = over.pop("arms", arms)
        plan = _merge(plan, over)
    unknown = [a for a in arms if a.split("/")[0] not in plan["strategies"] or a.split("/")[-1] not in plan["losses"]]
    if unknown:
        raise SystemExit(f"{path}: arms {unknown} are not strategy/loss pairs of the plan")
    plan["arms"] = arms
    plan["mode"] = mode
    return plan


# ------------------------------------------------------------------ per seed


def evaluate(model, tok, heldout, plan, seed, reference_scores=None):
    return evaluate_synthetic(model, tok, heldout, plan["evaluation"], seed, reference_scores=reference_scores)


def _summary(res, heldout) -> dict:
    return {"figures": res.figures, "per_row": synthetic_per_row(res, heldout), "samples": res.extra.get("samples", []),
            "notes": res.extra.get("notes", [])}


def base_stage(d: Path, train, heldout, plan, seed, threads) -> dict:
    from transformers import AutoTokenizer

    from axolotl_mipo.evaluation.evaluate import load_model
    from experiments.tasks import synthetic as S

    model_dir = d / "sft-model"
    users = S.users_from_rows(train + heldout)
    sft = train_weak_base(seed, train, users, model_dir, threads, steps=plan["base"]["sft_steps"])
    tok = AutoTokenizer.from_pretrained(model_dir)
    res = evaluate(load_model(str(model_dir), device="cpu"), tok, heldout, plan, seed)
    out = _summary(res, heldout)
    out["sft"] = sft
    out["pair_scores"] = res.extra.get("pair_scores")
    return out


def train_config(plan: dict, arm: str, seed: int, base: Path, train_path: Path, d: Path, cache: Path) -> dict:
    sname, loss = arm.split("/")
    spec = plan["strategies"][sname]
    cfg = mipo_config(seed, base, train_path, d)
    g, t = plan["generation"], plan["training"]
    cfg["mipo"].update(strategy=spec["strategy"], loss=loss, cache_dir=str(cache))
    if spec.get("strategy_kwargs"):
        cfg["mipo"]["strategy_kwargs"] = spec["strategy_kwargs"]
    cfg["mipo"]["generation"].update({k: g[k] for k in ("max_new_tokens", "temperature", "top_p", "batch_size")})
    cfg.update({k: t[k] for k in ("num_epochs", "micro_batch_size", "learning_rate", "rl_beta", "lora_r",
                                  "lora_alpha")})
    if t.get("max_steps"):
        cfg["max_steps"] = t["max_steps"]
    return cfg


def arm_stage(d: Path, seed_dir: Path, heldout, plan, arm, seed, base_res, threads) -> dict:
    from transformers import AutoTokenizer

    from axolotl_mipo.evaluation.evaluate import load_model

    base = seed_dir / "sft-model"
    cfg = train_config(plan, arm, seed, base, seed_dir / "train.jsonl", d, seed_dir / "mipo_cache")
    trained = train_arm(d, cfg, threads, label=f"seed {seed} {arm}")
    tok = AutoTokenizer.from_pretrained(base)
    res = evaluate(load_model(str(base), str(trained.adapter), device="cpu"), tok, heldout, plan, seed,
                   reference_scores=base_res.get("pair_scores"))
    out = _summary(res, heldout)
    out["training"] = trained.training
    return out


def run_seed(out: Path, plan: dict, seed: int, threads: int) -> None:
    import torch

    from experiments.tasks import synthetic as S
    from experiments.tasks import synthetic_unique as U

    torch.set_num_threads(threads)
    d = out / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    tk = plan["task"]
    train, heldout = U.split_rows(U.make_unique_task(tk["users"], tk["train_per_user"], tk["heldout_per_user"], seed))
    S.write_jsonl(train, d / "train.jsonl")
    S.write_jsonl(heldout, d / "heldout.jsonl")
    log(f"seed {seed}: {len(train)} training rows, {len(heldout)} held-out rows")
    base_res = stage(d / "base.json", lambda: base_stage(d, train, heldout, plan, seed, threads))
    for arm in plan["arms"]:
        slug = arm.replace("/", "-")
        res = stage(d / f"arm-{slug}.json",
                    lambda arm=arm, slug=slug: arm_stage(d / slug, d, heldout, plan, arm, seed, base_res, threads))
        f, b = res["figures"], base_res["figures"]
        log(f"seed {seed} {arm}: MI {f.get('mi_mean', float('nan')):.3f} (base {b.get('mi_mean', float('nan')):.3f})")
    (d / "done").write_text("ok\n")


# ------------------------------------------------------------------ statistics


def _metrics(plan) -> list[str]:
    return list(plan["primary"]) + [m for m in plan["secondary"] if m not in plan["primary"]]


def _rows(res: dict, metric: str):
    return res["per_row"].get(metric)


def _level(res: dict, metric: str) -> float | None:
    """A model's figure on one seed: the mean of its per-row values (what the differences pair)."""
    vals = [v for v in (_rows(res, metric) or []) if v is not None]
    return sum(vals) / len(vals) if vals else res["figures"].get(metric)


def summarize(results: dict[int, dict], plan: dict) -> dict:
    """Every arm-vs-base effect and every pre-registered contrast, with intervals, p-values and Holm."""
    from axolotl_mipo.evaluation import stats as St

    st = plan["statistics"]
    B, L = st["resamples"], st["level"]
    seeds = sorted(results)
    effects: dict[str, dict] = {}

    def diff_entry(per_seed_diffs):
        return St.paired_effect(per_seed_diffs, B, L)

    for arm in plan["arms"]:
        for metric in _metrics(plan):
            diffs = []
            for s in seeds:
                a, b = _rows(results[s]["arms"][arm], metric), _rows(results[s]["base"], metric)
                diffs.append(St.paired_differences(a, b) if a is not None and b is not None else None)
            if all(d is None for d in diffs):
                continue
            before = [_level(results[s]["base"], metric) for s in seeds]
            after = [_level(results[s]["arms"][arm], metric) for s in seeds]
            effects[f"{arm}|{metric}"] = {"arm": arm, "metric": metric, "before": before, "after": after,
                                          **diff_entry(diffs)}
    contrasts: dict[str, dict] = {}
    pairs = []
    for a, b in plan["contrasts"]["strategies"]:
        pairs += [(f"{a}/{loss}", f"{b}/{loss}") for loss in plan["losses"]]
    for a, b in plan["contrasts"]["losses"]:
        pairs += [(f"{s}/{a}", f"{s}/{b}") for s in plan["strategies"]]
    for x, y in pairs:
        if x not in plan["arms"] or y not in plan["arms"]:
            continue
        for metric in plan["primary"]:
            diffs = []
            for s in seeds:
                a, b = _rows(results[s]["arms"][x], metric), _rows(results[s]["arms"][y], metric)
                diffs.append(St.paired_differences(a, b) if a is not None and b is not None else None)
            if all(d is None for d in diffs):
                continue
            contrasts[f"{x} - {y}|{metric}"] = {"a": x, "b": y, "metric": metric, **diff_entry(diffs)}
    # Holm: family A = arm-vs-base on the primary metrics; family B = the contrasts
    fam_a = [k for k, e in effects.items() if e["metric"] in plan["primary"]]
    for keys, table in ((fam_a, effects), (list(contrasts), contrasts)):
        for k, adj in zip(keys, St.holm([table[k]["p"] for k in keys])):
            table[k]["p_holm"] = adj
    return {"effects": effects, "contrasts": contrasts, "verdicts": verdicts(effects, plan)}


def verdicts(effects: dict, plan: dict) -> dict:
    """The plan's decision rule, arm by arm."""
    a = plan["statistics"]["fwer"]
    out = {}
    for arm in plan["arms"]:
        per = {}
        for m in plan["primary"]:
            e = effects.get(f"{arm}|{m}")
            if e is None or e.get("p_holm") is None or e["mean"] is None:
                per[m] = "n/a"
            elif e["p_holm"] <= a:
                per[m] = "rises" if e["mean"] > 0 else "falls"
            else:
                per[m] = "no detectable change"
        helps = per.get("mi_mean") == "rises" and per.get("accuracy@K4") == "rises"
        hurts = any(v == "falls" for v in per.values())
        out[arm] = {"per_metric": per,
                    "verdict": "hurts" if hurts else "helps" if helps else "no detectable effect"}
    return out


def _fmt(x, nd=3):
    return "n/a" if x is None else f"{x:+.{nd}f}"


def _p(e: dict) -> str:
    return "n/a" if e.get("p_holm") is None else f"{e['p_holm']:.3f}"


def markdown(summary: dict, plan: dict, results: dict, wall: float, cpu: float) -> str:
    seeds = sorted(results)
    lines = [f"# Strategy x loss grid ({plan['mode']} run; seeds {seeds})", ""]
    if plan["mode"] != "full":
        lines += [f"**A {plan['mode']} run: it shows the machinery works; its figures are not results.**", ""]
    lines += [("Effect = mean per-row paired difference after - before (pooled over seeds); [95% interval] from a "
               f"hierarchical bootstrap over seeds then rows ({plan['statistics']['resamples']} resamples); "
               "p_Holm: Holm-adjusted within family A (arms x primary metrics). No LLM judge was run (no "
               "wins/ties/losses to report)."), "",
              "| arm | verdict | "
              + " | ".join(f"{m}: base → after; effect [95% CI] (p_Holm)" for m in plan["primary"]) + " |",
              "|---|---|" + "---|" * len(plan["primary"])]
    eff = summary["effects"]
    for arm in plan["arms"]:
        cells = []
        for m in plan["primary"]:
            e = eff.get(f"{arm}|{m}")
            if e is None:
                cells.append("n/a")
                continue
            b = [x for x in e["before"] if x is not None]
            a = [x for x in e["after"] if x is not None]
            bm = sum(b) / len(b) if b else None
            am = sum(a) / len(a) if a else None
            cells.append(f"{'n/a' if bm is None else f'{bm:.3f}'} → {'n/a' if am is None else f'{am:.3f}'}; "
                         f"{_fmt(e['mean'])} [{_fmt(e['ci'][0])}, {_fmt(e['ci'][1])}] "
                         f"({_p(e)})")
        lines.append(f"| {arm} | {summary['verdicts'][arm]['verdict']} | " + " | ".join(cells) + " |")
    sec = [m for m in _metrics(plan) if m not in plan["primary"]]
    if sec:
        lines += ["", "Secondary (exploratory, unadjusted): effect [95% CI]", "",
                  "| arm | " + " | ".join(sec) + " |", "|---|" + "---|" * len(sec)]
        for arm in plan["arms"]:
            cells = []
            for m in sec:
                e = eff.get(f"{arm}|{m}")
                cells.append("n/a" if e is None else f"{_fmt(e['mean'])} [{_fmt(e['ci'][0])}, {_fmt(e['ci'][1])}]")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    if summary["contrasts"]:
        lines += ["", "Between arms (same seeds and rows; family B, Holm-adjusted):", "",
                  "| contrast | metric | difference [95% CI] | p_Holm |", "|---|---|---|---|"]
        for c in summary["contrasts"].values():
            lines.append(f"| {c['a']} − {c['b']} | {c['metric']} | {_fmt(c['mean'])} [{_fmt(c['ci'][0])}, "
                         f"{_fmt(c['ci'][1])}] | {_p(c)} |")
    lines += ["", (f"Total wall time {wall:.0f}s, {cpu:.0f} CPU-seconds of this process and its children "
                   f"(stages resumed from an earlier run are not counted), {os.cpu_count()} cores."), ""]
    return "\n".join(lines)


def forest(summary: dict, plan: dict, path: Path) -> bool:
    """One panel per primary metric: every arm's effect with its 95% interval."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no forest plot")
        return False
    metrics = list(plan["primary"])
    arms = list(plan["arms"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.45 * len(arms) + 1.6), sharey=True)
    axes = [axes] if len(metrics) == 1 else list(axes)
    for ax, m in zip(axes, metrics):
        for i, arm in enumerate(arms):
            e = summary["effects"].get(f"{arm}|{m}")
            if e is None or e["mean"] is None:
                continue
            lo, hi = e["ci"]
            sig = e.get("p_holm") is not None and e["p_holm"] <= plan["statistics"]["fwer"]
            ax.errorbar(e["mean"], i, xerr=[[e["mean"] - lo], [hi - e["mean"]]], fmt="o",
                        color="tab:blue" if sig else "tab:gray", capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{m}: after − before")
        ax.set_yticks(range(len(arms)))
        ax.set_yticklabels(arms)
        ax.invert_yaxis()
    fig.suptitle(f"Strategy x loss grid ({plan['mode']}): 95% hierarchical-bootstrap intervals; "
                 "blue = Holm-significant", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(out: Path, plan: dict, wall: float, cpu: float) -> dict:
    results = {}
    for s in plan["seeds"]:
        d = out / f"seed{s}"
        results[s] = {"base": json.loads((d / "base.json").read_text()),
                      "arms": {a: json.loads((d / f"arm-{a.replace('/', '-')}.json").read_text())
                               for a in plan["arms"]}}
    summary = summarize(results, plan)
    costs = {s: {"base": {k: r["base"].get(k) for k in ("wall_s", "cpu_s")},
                 "arms": {a: {"stage_wall_s": v.get("wall_s"), "stage_cpu_s": v.get("cpu_s"),
                              "training": v.get("training")} for a, v in r["arms"].items()}}
             for s, r in results.items()}
    figures = {s: {"base": r["base"]["figures"], **{a: v["figures"] for a, v in r["arms"].items()}}
               for s, r in results.items()}
    doc = {"plan": plan, "wall_s": wall, "cpu_s": cpu, "judge": None, "figures": figures, "costs": costs, **summary}
    (out / "grid.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "table.md").write_text(markdown(summary, plan, results, wall, cpu))
    forest(summary, plan, out / "forest.png")
    return doc


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plan", default=str(HERE / "PLAN.md"))
    p.add_argument("--out", default="runs/grid")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="the plan's quick run (about 15 min; not results)")
    g.add_argument("--smoke", action="store_true", help="the plan's smoke run (the CI test; not results)")
    p.add_argument("--jobs", type=int, default=None, help="seeds at once (default: min(seeds, cores))")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    mode = "quick" if a.quick else "smoke" if a.smoke else "full"
    plan = load_plan(Path(a.plan), mode)
    out = Path(a.out).resolve()
    os.environ.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if a.worker is not None:
        run_seed(out, plan, a.worker, worker_threads())
        return 0
    check_out(out, plan)
    start, cpu0 = time.time(), cpu_seconds()
    todo = [s for s in plan["seeds"] if not (out / f"seed{s}" / "done").exists()]
    jobs = max(1, min(a.jobs or (os.cpu_count() or 1), len(todo) or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log(f"{mode} grid: {len(plan['seeds'])} seeds x {len(plan['arms'])} arms; {len(todo)} seed(s) to run, "
        f"{jobs} at a time, {threads} thread(s) each; logs in {out}/seed*/worker.log")
    mode_flag = ["--quick"] if a.quick else ["--smoke"] if a.smoke else []
    failed = run_seed_workers(
        todo, lambda s: worker_command(__spec__.name, "--plan", a.plan, "--out", str(out), "--worker", str(s),
                                       *mode_flag),
        lambda s: out / f"seed{s}" / "worker.log", jobs, threads, append=True)
    if failed:
        log(f"seeds {failed} failed; rerun the same command to continue where they stopped")
        return 1
    doc = report(out, plan, time.time() - start, cpu_seconds() - cpu0)
    print((out / "table.md").read_text())
    print(f"verdicts: {json.dumps({k: v['verdict'] for k, v in doc['verdicts'].items()})}")
    print(f"figures: {out / 'grid.json'}; table: {out / 'table.md'}; plot: {out / 'forest.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
