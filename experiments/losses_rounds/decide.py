"""The losses-and-rounds study's statistics, its pre-registered decision rule, costs and report (pure Python).

Family C: the plan's contrasts (each loss against ``dpo``, round 2 against round 1) x the primary metrics,
Holm-corrected together; family A: every arm against the base x the primary metrics, Holm-corrected
separately. Each effect is the pooled mean of per-row paired differences with a hierarchical percentile
bootstrap interval and p-value (:func:`axolotl_mipo.evaluation.stats.paired_effect`). The rule
(``experiments/losses_rounds/PLAN.md``, "Decision rule") then says, for each contrast ``X - dpo``, whether X
beats ``dpo``, is worse, or is indistinguishable, and turns that and each arm's measured CPU seconds per
optimizer step into the recommendation text.
"""

from __future__ import annotations

import os
from pathlib import Path

from axolotl_mipo.evaluation import stats as St

KEY = ("mi", "acc@K4")  # a win must show on one of these (the plan's rule)


def values(res: dict, metric: str):
    """An evaluation's per-unit values of ``metric`` (held-out rows, or checker-ordered pairs)."""
    return res["per_row"].get(metric, res.get("per_pair", {}).get(metric))


def _diffs(results: dict, a, b, metric: str) -> list:
    """Per seed, ``a - b`` per row (``a``/``b``: an arm's name, or ``None`` for the base)."""
    out = []
    for r in results.values():
        x = values(r["base"] if a is None else r["arms"][a], metric)
        y = values(r["base"] if b is None else r["arms"][b], metric)
        out.append(St.paired_differences(x, y) if x is not None and y is not None else None)
    return out


def effect(results: dict, a, b, metric: str, plan: dict) -> dict:
    bs = plan["bootstrap"]
    return {"a": a or "base", "b": b or "base", "metric": metric,
            **St.paired_effect(_diffs(results, a, b, metric), bs["resamples"], bs["level"])}


def _holm(entries: list[dict]) -> None:
    for e, adj in zip(entries, St.holm([e["p"] for e in entries])):
        e["p_holm"] = adj


def classify(per_metric: dict[str, dict], primary, alpha: float) -> str:
    """The plan's rule for one contrast ``X - dpo`` given its entries by primary metric (``mean``, ``p_holm``).

    ``beats``: positive at adjusted p <= alpha on ``mi`` or ``acc@K4`` and no primary metric negative at that
    level; ``worse``: some primary metric negative and none positive at that level; else ``indistinguishable``."""
    def sig(m, sign):
        e = per_metric.get(m)
        return (e is not None and e.get("mean") is not None and e.get("p_holm") is not None
                and e["p_holm"] <= alpha and sign * e["mean"] > 0)

    if any(sig(m, 1) for m in KEY if m in primary) and not any(sig(m, -1) for m in primary):
        return "beats"
    if any(sig(m, -1) for m in primary) and not any(sig(m, 1) for m in primary):
        return "worse"
    return "indistinguishable"


def summarize(results: dict, plan: dict) -> dict:
    """Family A (arm - base), family C (the contrasts), secondary metrics unadjusted, and each contrast's verdict."""
    primary, secondary = list(plan["primary"]), list(plan["secondary"])
    names = [a["name"] for a in plan["arms"]]
    fam_a = {f"{n}|{m}": effect(results, n, None, m, plan) for n in names for m in primary}
    fam_c = {f"{x} - {y}|{m}": effect(results, x, y, m, plan) for x, y in plan["contrasts"] for m in primary}
    _holm(list(fam_a.values()))
    _holm(list(fam_c.values()))
    sec = {f"{n}|{m}": effect(results, n, None, m, plan) for n in names for m in secondary}
    sec.update({f"{x} - {y}|{m}": effect(results, x, y, m, plan) for x, y in plan["contrasts"] for m in secondary})
    verdicts = {f"{x} - {y}": classify({m: fam_c[f"{x} - {y}|{m}"] for m in primary}, primary, plan["alpha"])
                for x, y in plan["contrasts"]}
    levels = {m: {"base": [_mean(values(r["base"], m)) for r in results.values()],
                  **{n: [_mean(values(r["arms"][n], m)) for r in results.values()] for n in names}}
              for m in primary + secondary}
    return {"family_a": fam_a, "family_c": fam_c, "secondary": sec, "verdicts": verdicts, "levels": levels}


def _mean(v):
    v = [x for x in (v or []) if x is not None]
    return sum(v) / len(v) if v else None


# ------------------------------------------------------------------ cost


def costs(results: dict, plan: dict) -> dict:
    """Per arm: each seed's stage seconds (wall and CPU) and steps, and pooled seconds per optimizer step."""
    out = {}
    for arm in plan["arms"]:
        n = arm["name"]
        per_seed, tw, tc, steps, measured, loop = {}, 0.0, 0.0, 0, True, 0.0
        for s, r in results.items():
            t = r["training"][n]
            k = t["log"].get("logged_steps") or 0  # logging_steps is 1: one logged line per optimizer step
            ev = r["arms"][n]
            st = {**t["stages"], "evaluation": {"wall_s": ev.get("wall_s"), "cpu_s": ev.get("cpu_s")}}
            per_seed[s] = {"steps": k, "stages": st, "measured": t.get("measured", True)}
            tw, tc, steps = tw + st["train"]["wall_s"], tc + st["train"]["cpu_s"], steps + k
            measured = measured and t.get("measured", True)
            loop += t["log"].get("train_runtime_s") or 0.0
        out[n] = {"per_seed": per_seed, "steps": steps, "train_wall_s": tw, "train_cpu_s": tc,
                  "wall_s_per_step": tw / steps if steps else None, "cpu_s_per_step": tc / steps if steps else None,
                  "measured": measured,
                  # the trainer's own loop (the log's train_runtime), without loading, data and the MIPO pipeline
                  "trainer_wall_s_per_step": loop / steps if steps and loop else None}
        extra = [p["stages"]["extra_round"] for p in per_seed.values() if "extra_round" in p["stages"]]
        if extra:
            out[n]["extra_round"] = {"wall_s": sum(e["wall_s"] for e in extra), "cpu_s": sum(e["cpu_s"] for e in extra)}
    out["base"] = {"evaluation": {s: {"wall_s": r["base"].get("wall_s"), "cpu_s": r["base"].get("cpu_s")}
                                  for s, r in results.items()}}
    return out


# ------------------------------------------------------------------ recommendation


def recommend(summary: dict, cost: dict, plan: dict, results: dict) -> dict:
    """The plan's recommendation for "Which strategy and loss?" and for a second round, with its reasons."""
    alpha, primary = plan["alpha"], list(plan["primary"])
    rounds = {a["name"] for a in plan["arms"] if a.get("round", 1) != 1}
    loss_c = [(x, y) for x, y in plan["contrasts"] if x not in rounds]
    round_c = [(x, y) for x, y in plan["contrasts"] if x in rounds]
    ref = loss_c[0][1] if loss_c else "dpo"
    cps = {n: c.get("cpu_s_per_step") for n, c in cost.items() if n != "base"}
    fc = summary["family_c"]

    def k4(x, y):
        return fc.get(f"{x} - {y}|acc@K4", {}).get("mean")

    winners = [x for x, y in loss_c if summary["verdicts"][f"{x} - {y}"] == "beats"]
    out = {"loss_verdicts": {x: summary["verdicts"][f"{x} - {y}"] for x, y in loss_c}, "exploratory": {}}
    if winners:
        best = max(winners, key=lambda x: k4(x, ref) if k4(x, ref) is not None else float("-inf"))
        choice = best
        cheaper = [n for n in [ref, *(x for x, _ in loss_c)] if n != best and cps.get(n) is not None
                   and cps.get(best) is not None and cps[n] < cps[best]]
        expl = {f"{n} - {best}|{m}": effect(results, n, best, m, plan) for n in cheaper for m in primary}
        _holm(list(expl.values()))  # exploratory: its own family, reported, never a verdict of the study
        same = [n for n in cheaper
                if classify({m: expl[f"{n} - {best}|{m}"] for m in primary}, primary, alpha) == "indistinguishable"]
        if same:
            choice = min(same, key=lambda n: cps[n])
        out["exploratory"] = expl
        text = (f"`{best}` beats `{ref}` (largest acc@K4 contrast, {k4(best, ref):+.3f})."
                if choice == best else
                f"`{best}` beats `{ref}` (largest acc@K4 contrast, {k4(best, ref):+.3f}), but `{choice}` is "
                f"indistinguishable from it and cheaper: {cps[best] / cps[choice]:.2f}x the CPU seconds per step "
                f"for `{best}`. Use `{choice}`.")
        out.update(loss=choice, best=best)
    else:
        worse = [x for x, v in out["loss_verdicts"].items() if v == "worse"]
        parts = ", ".join(_contrast_text(fc, x, ref, cps) for x, _ in loss_c)
        text = (f"No loss beat `{ref}`; keep `{ref}` (the default and cheapest). On a real 135M model the losses "
                f"were indistinguishable from it{' or worse (' + ', '.join(worse) + ')' if worse else ''}: {parts}.")
        out.update(loss=ref, best=None)
    out["loss_text"] = text
    rtext = []
    for x, y in round_c:
        v = summary["verdicts"][f"{x} - {y}"]
        extra = cost.get(x, {}).get("extra_round", {})
        c = f"{extra.get('wall_s', 0):.0f} s wall / {extra.get('cpu_s', 0):.0f} CPU-s over {len(results)} seed(s)"
        if v == "beats":
            rtext.append(f"A second round adds: `{x}` beats `{y}` (round 1); run `axolotl-mipo rounds` with 2 rounds "
                         f"(extra cost {c}).")
        else:
            rtext.append(f"A second round added nothing detectable here (`{x}` vs `{y}`: {v}), at its measured cost "
                         f"of {c} (merge, regeneration, training).")
        out["rounds"] = v == "beats"
    out["rounds_text"] = " ".join(rtext)
    return out


def _contrast_text(fc: dict, x: str, ref: str, cps: dict) -> str:
    cells = []
    for key, e in fc.items():
        if key.startswith(f"{x} - {ref}|") and e.get("mean") is not None:
            cells.append(f"{e['metric']} {e['mean']:+.3f} [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]")
    ratio = (f"; {cps[x] / cps[ref]:.2f}x the CPU-s per step" if cps.get(x) and cps.get(ref) else "")
    return f"`{x}` − `{ref}`: " + ", ".join(cells) + ratio


def report(results: dict, plan: dict, wall: float, cpu: float) -> dict:
    summary = summarize(results, plan)
    cost = costs(results, plan)
    return {"plan": plan, "seeds": list(results), **summary, "costs": cost,
            "recommendation": recommend(summary, cost, plan, results), "wall_s": wall, "cpu_s": cpu,
            "cores": os.cpu_count(),
            "figures": {s: {"base": r["base"]["figures"], **{n: v["figures"] for n, v in r["arms"].items()}}
                        for s, r in results.items()}}


# ------------------------------------------------------------------ table and figure


def _f(x, nd=3):
    return "n/a" if x is None else f"{x:+.{nd}f}"


def _cell(e: dict, holm: bool = True) -> str:
    s = f"{_f(e['mean'])} [{_f(e['ci'][0])}, {_f(e['ci'][1])}]"
    if holm:
        s += f" (p_Holm {'n/a' if e.get('p_holm') is None else format(e['p_holm'], '.3f')})"
    return s


def markdown(doc: dict, plan: dict, results: dict) -> str:
    primary = list(plan["primary"])
    n_rows = sum(len(r["base"]["per_row"]["mi"]) for r in results.values())
    n_pairs = sum(len(r["base"]["pairs"]) for r in results.values())
    smoke = plan["mode"] == "smoke"
    model = "a tiny random model (SMOKE: not a result)" if smoke else "SmolLM2-135M-Instruct"
    lines = [f"# Losses and a second MIPO round on {model}",
             "", f"Seeds {doc['seeds']}, {n_rows} held-out rows ({n_pairs} checker-ordered pairs). Effect = pooled "
             "mean per-row paired difference; [95% interval] and p from a hierarchical bootstrap (seeds, then rows; "
             f"{plan['bootstrap']['resamples']} resamples); per-seed means in report.json.", "",
             "## Family C: between arms (Holm over the contrasts x primary metrics)", "",
             "| contrast | verdict | " + " | ".join(primary) + " |", "|---|---|" + "---|" * len(primary)]
    for x, y in plan["contrasts"]:
        c = f"{x} - {y}"
        lines.append(f"| {x} − {y} | {doc['verdicts'][c]} | "
                     + " | ".join(_cell(doc["family_c"][f"{c}|{m}"]) for m in primary) + " |")
    lines += ["", "## Family A: arm − base (Holm over the arms x primary metrics)", "",
              "| arm | " + " | ".join(primary) + " |", "|---|" + "---|" * len(primary)]
    for a in plan["arms"]:
        lines.append(f"| {a['name']} | " + " | ".join(_cell(doc["family_a"][f"{a['name']}|{m}"]) for m in primary)
                     + " |")
    sec = list(plan["secondary"])
    lines += ["", "## Secondary (intervals, no correction, no decision)", "",
              "| effect | " + " | ".join(sec) + " |", "|---|" + "---|" * len(sec)]
    for who in [a["name"] for a in plan["arms"]] + [f"{x} - {y}" for x, y in plan["contrasts"]]:
        lines.append(f"| {who.replace(' - ', ' − ') if ' - ' in who else who + ' − base'} | "
                     + " | ".join(_cell(doc["secondary"][f"{who}|{m}"], holm=False) for m in sec) + " |")
    lines += ["", "## Cost (measured in this run)", "",
              "| arm | optimizer steps | wall s / step | CPU s / step | trainer loop wall s / step | "
              "stages (wall s / CPU s, all seeds) |", "|---|---|---|---|---|---|"]
    for a in plan["arms"]:
        c = doc["costs"][a["name"]]
        stages: dict = {}
        for p in c["per_seed"].values():
            for k, t in p["stages"].items():
                acc = stages.setdefault(k, [0.0, 0.0])
                acc[0] += t.get("wall_s") or 0.0
                acc[1] += t.get("cpu_s") or 0.0
        st = "; ".join(f"{k} {w:.0f}/{u:.0f}" for k, (w, u) in stages.items())
        wps, cps, lps = c["wall_s_per_step"], c["cpu_s_per_step"], c["trainer_wall_s_per_step"]
        lines.append(f"| {a['name']}{'' if c['measured'] else ' (resumed: not measured)'} | {c['steps']} | "
                     f"{'n/a' if wps is None else f'{wps:.2f}'} | {'n/a' if cps is None else f'{cps:.2f}'} | "
                     f"{'n/a' if lps is None else f'{lps:.2f}'} | {st} |")
    rec = doc["recommendation"]
    lines += ["", "## Decision (pre-registered rule)", "", f"* Loss: {rec['loss_text']}"]
    if rec.get("rounds_text"):
        lines.append(f"* Rounds: {rec['rounds_text']}")
    lines += ["", f"Total {doc['wall_s']:.0f} s wall, {doc['cpu_s']:.0f} CPU-s of this process and its children "
              f"(stages read back from an earlier run are not counted), {doc['cores']} cores.", ""]
    return "\n".join(lines)


def forest(doc: dict, plan: dict, path: Path) -> bool:
    """One panel per primary metric: each family-C contrast with its 95% interval (blue: Holm-significant)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    primary, rows = list(plan["primary"]), [f"{x} - {y}" for x, y in plan["contrasts"]]
    fig, axes = plt.subplots(1, len(primary), figsize=(4.2 * len(primary), 0.5 * len(rows) + 1.6), sharey=True)
    axes = [axes] if len(primary) == 1 else list(axes)
    for ax, m in zip(axes, primary):
        for i, c in enumerate(rows):
            e = doc["family_c"][f"{c}|{m}"]
            if e["mean"] is None:
                continue
            sig = e.get("p_holm") is not None and e["p_holm"] <= plan["alpha"]
            ax.errorbar(e["mean"], i, xerr=[[e["mean"] - e["ci"][0]], [e["ci"][1] - e["mean"]]], fmt="o",
                        color="tab:blue" if sig else "tab:gray", capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(m)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([r.replace(" - ", " − ") for r in rows])
        ax.invert_yaxis()
    fig.suptitle("Losses and rounds, family C: 95% hierarchical-bootstrap intervals; blue = Holm-significant"
                 + (" (SMOKE: not a result)" if plan["mode"] == "smoke" else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
