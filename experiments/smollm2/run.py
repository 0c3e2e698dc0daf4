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
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import yaml

# the project's one statistics module (also the grid's); kept under this name for the tests
from axolotl_mipo.evaluation.stats import hier_bootstrap
from experiments.harness import check_out, cpu_seconds, logger, mipo_config, stage, train_arm

HERE = Path(__file__).resolve().parent
PREFS = ("language", "format", "max_words", "topic", "register", "all")
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


def _examples(rows):
    from axolotl_mipo.data.example import Example

    return [Example(index=i, messages=(("user", r["query"]),), context=r["context"], source="heldout",
                    meta={"user_id": r["user_id"], "preferences": r["preferences"]})
            for i, r in enumerate(rows)]


def _mean_logp(model, tok, examples, responses, batch_size):
    from axolotl_mipo.data.prompts import build_messages
    from axolotl_mipo.scoring import response_logprobs

    scored = response_logprobs(model, tok, [build_messages(ex.messages, ex.context) for ex in examples],
                               list(responses), batch_size=batch_size)
    return [s / n if n else float("-inf") for s, n in scored]


def preference_pairs(heldout, with_c, without_c):
    """Rows where the checkers order the base's with-persona and without-persona responses."""
    from experiments.tasks.personas import check_response

    pairs = []
    for i, (r, a, b) in enumerate(zip(heldout, with_c, without_c)):
        sa, sb = (sum(check_response(y, r["preferences"]).values()) for y in (a, b))
        if sa != sb:
            better, worse = (a, b) if sa > sb else (b, a)
            pairs.append({"row": i, "better": better, "worse": worse, "better_is_with_persona": sa > sb})
    return pairs


def pair_accuracy(model, tok, examples, pairs, batch_size) -> list[int]:
    if not pairs:
        return []
    ex = [examples[p["row"]] for p in pairs]
    lp = _mean_logp(model, tok, ex + ex, [p["better"] for p in pairs] + [p["worse"] for p in pairs], batch_size)
    n = len(pairs)
    return [int(lp[i] > lp[n + i]) for i in range(n)]


def _per_row(res, heldout) -> dict:
    from experiments.tasks.personas import check_response

    checks = [check_response(y, r["preferences"]) for y, r in zip(res.responses, heldout)]
    rows = {"mi": res.mi_per_row}
    for k, ident in res.extra.get("identified_per_row", {}).items():
        rows[f"acc@K{k}"] = [int(x) for x in ident]
    for d in PREFS[:-1]:
        rows[f"pref_{d}"] = [int(c[d]) for c in checks]
    rows["pref_all"] = [int(all(c.values())) for c in checks]
    return rows


def evaluate(model, tok, heldout, plan, seed) -> tuple[dict, list[str]]:
    from axolotl_mipo.evaluation.evaluate import evaluate_model
    from experiments.tasks.personas import persona_checker

    ev = plan["evaluation"]
    res = evaluate_model(model, tok, _examples(heldout), k_values=ev["k"], max_new_tokens=ev["max_new_tokens"],
                         temperature=ev["temperature"], top_p=ev["top_p"], seed=seed, batch_size=ev["batch_size"],
                         checker=persona_checker, progress=False)
    return {"figures": res.figures, "per_row": _per_row(res, heldout),
            "samples": res.extra.get("samples", [])}, res.responses


def base_stage(d: Path, base: Path, heldout, plan, seed, tok) -> dict:
    from axolotl_mipo.evaluation.evaluate import generate_responses, load_model

    ev = plan["evaluation"]
    model = load_model(str(base), device="cpu", dtype="float32")
    out, with_c = evaluate(model, tok, heldout, plan, seed)
    no_persona = [dataclasses.replace(ex, context=None) for ex in _examples(heldout)]
    without = [t for t, _ in generate_responses(model, tok, no_persona, max_new_tokens=ev["max_new_tokens"],
                                                temperature=ev["temperature"], top_p=ev["top_p"], seed=seed,
                                                batch_size=ev["batch_size"], progress=False)]
    pairs = preference_pairs(heldout, with_c, without)
    out["pairs"] = pairs
    out["per_pair"] = {"pref_accuracy": pair_accuracy(model, tok, _examples(heldout), pairs, ev["batch_size"])}
    out["responses"], out["responses_without_persona"] = with_c, without
    return out


def train_config(plan, arm, seed, base: Path, train_path: Path, d: Path, cache: Path) -> dict:
    cfg = mipo_config(seed, base, train_path, d, arm["strategy"])
    g, t = plan["generation"], plan["training"]
    cfg["mipo"].update(loss=arm["loss"], cache_dir=str(cache))
    if arm.get("strategy_kwargs"):
        cfg["mipo"]["strategy_kwargs"] = arm["strategy_kwargs"]
    cfg["mipo"]["generation"].update(max_new_tokens=g["max_new_tokens"], temperature=g["temperature"],
                                     top_p=g["top_p"], batch_size=g["batch_size"], device="cpu")
    cfg.update(lora_r=t["lora_r"], lora_alpha=t["lora_alpha"], learning_rate=t["learning_rate"],
               num_epochs=t["num_epochs"], micro_batch_size=t["micro_batch_size"], rl_beta=t["rl_beta"],
               sequence_len=t["sequence_len"], logging_steps=1)
    if t.get("max_steps"):
        cfg["max_steps"] = t["max_steps"]
    return cfg


def arm_stage(d: Path, base: Path, train_path: Path, heldout, plan, arm, seed, tok, base_res, threads) -> dict:
    from axolotl_mipo.evaluation.evaluate import load_model

    cfg = train_config(plan, arm, seed, base, train_path, d, d.parent / "mipo_cache")
    trained = train_arm(d, cfg, threads, label=f"seed {seed} {arm['name']}")
    model = load_model(str(base), str(trained.adapter), device="cpu", dtype="float32")
    out, _ = evaluate(model, tok, heldout, plan, seed)
    out["per_pair"] = {"pref_accuracy": pair_accuracy(model, tok, _examples(heldout), base_res["pairs"],
                                                      plan["evaluation"]["batch_size"])}
    out["training"] = trained.training
    return out


def run_seed(out: Path, base: Path, plan: dict, seed: int, threads: int) -> dict:
    from transformers import AutoTokenizer

    from experiments.tasks import personas as Pe

    d = out / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    p = plan["personas"]
    rows = Pe.make_personas(p["train_users"] + p["heldout_users"], p["queries_per_user"], seed)
    train, heldout = Pe.split_by_user(rows, p["heldout_users"], seed)
    Pe.validate_rows(train, "train")
    Pe.validate_rows(heldout, "heldout")
    Pe.write_jsonl(train, d / "train.jsonl")
    Pe.write_jsonl(heldout, d / "heldout.jsonl")
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
