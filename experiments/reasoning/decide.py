"""The reasoning study's statistics, its pre-registered decision rule, costs and report (pure Python).

Family A (confirmatory): every arm against the base model, per task and primary metric (greedy accuracy,
unparseable share), Holm-corrected together. Family B (exploratory): the plan's between-arm contrasts, per
task and primary metric, Holm-corrected separately. Each effect is the pooled mean of per-question paired
differences with a hierarchical percentile bootstrap interval and p-value (seeds, then questions:
:func:`axolotl_mipo.evaluation.stats.paired_effect`). The rule (``experiments/reasoning/PLAN.md``, "Decision
rule") says for each arm and task whether the arm improves it, harms it, or is indistinguishable from the base.
"""

from __future__ import annotations

import os
from collections import Counter

from axolotl_mipo.evaluation import stats as St


def _model(r: dict, who: str | None) -> dict:
    return r["base"] if who is None else r["arms"][who]


def effect(results: dict, task: str, a: str | None, b: str | None, metric: str, plan: dict) -> dict:
    """``a - b`` on ``task`` (``None``: the base model), per question, pooled over seeds."""
    diffs = [St.paired_differences(_model(r[task], a)["per_row"][metric], _model(r[task], b)["per_row"][metric])
             for r in results.values()]
    bs = plan["bootstrap"]
    return {"task": task, "a": a or "base", "b": b or "base", "metric": metric,
            **St.paired_effect(diffs, bs["resamples"], bs["level"])}


def _holm(entries: list[dict]) -> None:
    for e, adj in zip(entries, St.holm([e["p"] for e in entries])):
        e["p_holm"] = adj


def _sig(e: dict | None, sign: int, alpha: float) -> bool:
    return (e is not None and e.get("mean") is not None and e.get("p_holm") is not None and e["p_holm"] <= alpha
            and sign * e["mean"] > 0)


def classify(acc: dict, unparseable: dict | None, alpha: float) -> str:
    """The plan's rule for one arm on one task, from its family-A entries (``mean``, ``p_holm``).

    ``improves``: accuracy up at adjusted p <= alpha and the unparseable share not up at that level;
    ``harms``: accuracy down at that level, or the unparseable share up at that level with no accuracy gain;
    else ``indistinguishable``."""
    up, down = _sig(acc, 1, alpha), _sig(acc, -1, alpha)
    more_unparseable = _sig(unparseable, 1, alpha)
    if up and not more_unparseable:
        return "improves"
    if down or (more_unparseable and not up):
        return "harms"
    return "indistinguishable"


def letters(results: dict, task: str, who: str | None) -> dict:
    """Multiple choice: how often each letter is named (pooled), the most-named letter's share, and what always
    naming it would score on the same questions (the position-bias baseline the pilot reported)."""
    named, n = Counter(), 0
    for r in results.values():
        m = _model(r[task], who)
        named.update(a for a in m["answers"] if a is not None)
        n += len(m["answers"])
    if not named:
        return {"counts": {}, "mode": None, "mode_share": 0.0, "always_mode_accuracy": None}
    mode = max(sorted(named), key=named.get)
    golds = [g for r in results.values() for g in r[task]["base"]["gold"]]
    return {"counts": dict(sorted(named.items())), "mode": mode, "mode_share": named[mode] / n if n else 0.0,
            "always_mode_accuracy": sum(g == mode for g in golds) / len(golds) if golds else None}


def summarize(results: dict, plan: dict) -> dict:
    tasks, primary, secondary = list(plan["tasks"]), list(plan["primary"]), list(plan["secondary"])
    names = [a["name"] for a in plan["arms"]]
    fam_a = {f"{n}|{t}|{m}": effect(results, t, n, None, m, plan) for n in names for t in tasks for m in primary}
    fam_b = {f"{x} - {y}|{t}|{m}": effect(results, t, x, y, m, plan)
             for x, y in plan.get("family_b", []) for t in tasks for m in primary}
    _holm(list(fam_a.values()))
    _holm(list(fam_b.values()))
    sec = {f"{n}|{t}|{m}": effect(results, t, n, None, m, plan) for n in names for t in tasks for m in secondary}
    verdicts = {f"{n}|{t}": classify(fam_a[f"{n}|{t}|accuracy"], fam_a.get(f"{n}|{t}|unparseable"), plan["alpha"])
                for n in names for t in tasks}
    levels = {t: {who or "base": {m: _pooled_mean(results, t, who, m) for m in primary + secondary}
                  for who in [None, *names]} for t in tasks}
    per_seed = {t: {str(s): {who or "base": {m: _mean(_model(r[t], who)["per_row"][m]) for m in primary}
                             for who in [None, *names]} for s, r in results.items()} for t in tasks}
    return {"family_a": fam_a, "family_b": fam_b, "secondary": sec, "verdicts": verdicts, "levels": levels,
            "per_seed": per_seed}


def _mean(v):
    v = [x for x in (v or []) if x is not None]
    return sum(v) / len(v) if v else None


def _pooled_mean(results: dict, task: str, who, metric: str):
    return _mean([x for r in results.values() for x in _model(r[task], who)["per_row"][metric]])


def costs(results: dict, plan: dict) -> dict:
    """Per arm and task: training steps, wall and CPU seconds (per step too), MIPO's pair counts; per model and
    task, the evaluation's seconds."""
    out: dict = {}
    for t in plan["tasks"]:
        for arm in plan["arms"]:
            n = arm["name"]
            steps, wall, cpu, kept, planned, measured, untrained = 0, 0.0, 0.0, 0, 0, True, []
            ev_w = ev_c = 0.0
            per_seed, reasons = {}, {}
            for s, r in results.items():
                tr = r[t]["training"][n]
                st = tr["log"].get("logged_steps") or 0
                w, c = tr["stages"]["train"]["wall_s"], tr["stages"]["train"]["cpu_s"]
                steps, wall, cpu = steps + st, wall + w, cpu + c
                # A resumed study's seeds may run on different machines, and a stage may read its generations
                # from a cache an interrupted run left, so the per-seed figures are what compare arms.
                per_seed[s] = {"steps": st, "wall_s": w, "cpu_s": c, "cpu_s_per_step": c / st if st else None}
                kept += tr["log"].get("pairs_kept") or 0
                planned += tr["log"].get("pairs_planned") or 0
                measured = measured and tr.get("measured", True)
                if not tr.get("trained", True):
                    untrained.append(s)
                    # The MIPO error's line: an untrained arm writes no training log, so its planned and
                    # identical counts live only here.
                    reasons[s] = tr.get("reason")
                ev_w += r[t]["arms"][n].get("wall_s") or 0.0
                ev_c += r[t]["arms"][n].get("cpu_s") or 0.0
            out[f"{n}|{t}"] = {"steps": steps, "train_wall_s": wall, "train_cpu_s": cpu,
                               "wall_s_per_step": wall / steps if steps else None,
                               "cpu_s_per_step": cpu / steps if steps else None, "pairs_planned": planned,
                               "pairs_kept": kept, "untrained_seeds": untrained, "untrained_reasons": reasons,
                               "per_seed": per_seed, "measured": measured,
                               "evaluation": {"wall_s": ev_w, "cpu_s": ev_c}}
        out[f"base|{t}"] = {"evaluation": {"wall_s": sum(r[t]["base"].get("wall_s") or 0.0 for r in results.values()),
                                           "cpu_s": sum(r[t]["base"].get("cpu_s") or 0.0 for r in results.values())}}
    return out


def _untrained_everywhere(c: dict) -> bool:
    """An arm's cost entry says MIPO kept no pair in any seed (its model is the base throughout)."""
    return bool(c["untrained_seeds"]) and len(c["untrained_seeds"]) == len(c["per_seed"])


def conclusion(summary: dict, plan: dict, cost: dict | None = None) -> str:
    """The docs' sentence, from the verdicts (the plan's "What the docs say")."""
    fa, tasks = summary["family_a"], list(plan["tasks"])
    names = [a["name"] for a in plan["arms"]]

    def cell(n, t):
        e = fa[f"{n}|{t}|accuracy"]
        return (f"`{n}` on {t}: accuracy {e['mean']:+.3f} [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]"
                if e.get("mean") is not None else f"`{n}` on {t}: n/a")

    wins = [(n, t) for n in names for t in tasks if summary["verdicts"][f"{n}|{t}"] == "improves"]
    harms = [(n, t) for n in names for t in tasks if summary["verdicts"][f"{n}|{t}"] == "harms"]
    if wins:
        text = ("MIPO's reasoning result reproduces at 135M on " + ", ".join(f"{t} with `{n}`" for n, t in wins)
                + ": " + "; ".join(cell(n, t) for n, t in wins) + ".")
    else:
        text = "No gain was detected at 135M on the generated tasks: " + "; ".join(
            cell(n, t) for n in names for t in tasks) + "."
    if harms:
        text += " Harmed: " + ", ".join(f"{t} by `{n}`" for n, t in harms) + "."
    idle = [(n, t) for n in names for t in tasks if cost is not None and _untrained_everywhere(cost[f"{n}|{t}"])]
    if idle:
        text += (" Untrained in every seed (MIPO kept no pair, so the arm's model is the base and its difference is"
                 " 0 by construction): " + ", ".join(f"{t} with `{n}`" for n, t in idle) + ".")
    return text


def stage_totals(results: dict) -> dict:
    """Wall and CPU seconds of every stage as recorded when it ran (``experiments.harness.stage`` adds them to
    each stage's JSON), summed over seeds, tasks and models: the whole study's cost, whichever run and machine
    each stage ran in. A run that only reads its stages back measures next to nothing itself."""
    wall = cpu = 0.0
    for r in results.values():
        for tr in r.values():
            for st in [tr["base"], *tr["arms"].values(), *tr["training"].values()]:
                wall += st.get("wall_s") or 0.0
                cpu += st.get("cpu_s") or 0.0
    return {"wall_s": wall, "cpu_s": cpu}


def report(results: dict, plan: dict, wall: float, cpu: float) -> dict:
    summary = summarize(results, plan)
    cost = costs(results, plan)
    choice = [t for t in plan["tasks"] if t == "choice"]
    models = [None, *[a["name"] for a in plan["arms"]]]
    return {"plan": plan, "seeds": list(results), **summary, "costs": cost,
            "letters": {t: {who or "base": letters(results, t, who) for who in models} for t in choice},
            "conclusion": conclusion(summary, plan, cost), "wall_s": wall, "cpu_s": cpu, "cores": os.cpu_count(),
            "stage_totals": stage_totals(results),
            "heldout": {t: sum(len(r[t]["base"]["per_row"]["accuracy"]) for r in results.values())
                        for t in plan["tasks"]}}


# ------------------------------------------------------------------ table


def _f(x, nd=3):
    return "n/a" if x is None else f"{x:+.{nd}f}"


def _cell(e: dict, holm: bool = True) -> str:
    s = f"{_f(e['mean'])} [{_f(e['ci'][0])}, {_f(e['ci'][1])}]"
    if holm:
        s += f" (p_Holm {'n/a' if e.get('p_holm') is None else format(e['p_holm'], '.3f')})"
    return s


def markdown(doc: dict, plan: dict) -> str:
    primary, tasks = list(plan["primary"]), list(plan["tasks"])
    smoke = plan["mode"] == "smoke"
    model = "a tiny random model (SMOKE: not a result)" if smoke else "SmolLM2-135M-Instruct"
    held = ", ".join(f"{t} {n}" for t, n in doc["heldout"].items())
    lines = [f"# MIPO on generated reasoning questions, {model}", "",
             f"Seeds {doc['seeds']}; held-out questions pooled: {held}. Effect = pooled mean per-question paired "
             "difference; [95% interval] and p from a hierarchical bootstrap (seeds, then questions; "
             f"{plan['bootstrap']['resamples']} resamples). Greedy decoding.", "",
             "## Levels (pooled means)", "", "| task | model | " + " | ".join(primary) + " |",
             "|---|---|" + "---|" * len(primary)]
    for t in tasks:
        for who, lv in doc["levels"][t].items():
            lines.append(f"| {t} | {who} | " + " | ".join("n/a" if lv[m] is None else f"{lv[m]:.3f}" for m in primary)
                         + " |")
    lines += ["", "## Family A: arm − base (Holm over arms x tasks x primary metrics)", "",
              "| arm | task | verdict | " + " | ".join(primary) + " |", "|---|---|---|" + "---|" * len(primary)]
    for a in plan["arms"]:
        for t in tasks:
            n = a["name"]
            lines.append(f"| {n} | {t} | {doc['verdicts'][f'{n}|{t}']} | "
                         + " | ".join(_cell(doc["family_a"][f"{n}|{t}|{m}"]) for m in primary) + " |")
    if plan.get("family_b"):
        lines += ["", "## Family B (exploratory): between arms (Holm over contrasts x tasks x primary metrics)", "",
                  "| contrast | task | " + " | ".join(primary) + " |", "|---|---|" + "---|" * len(primary)]
        for x, y in plan["family_b"]:
            for t in tasks:
                lines.append(f"| {x} − {y} | {t} | "
                             + " | ".join(_cell(doc["family_b"][f"{x} - {y}|{t}|{m}"]) for m in primary) + " |")
    sec = list(plan["secondary"])
    if sec:
        lines += ["", "## Secondary: arm − base (intervals, no correction, no decision)", "",
                  "| arm | task | " + " | ".join(sec) + " |", "|---|---|" + "---|" * len(sec)]
        for a in plan["arms"]:
            for t in tasks:
                lines.append(f"| {a['name']} | {t} | "
                             + " | ".join(_cell(doc["secondary"][f"{a['name']}|{t}|{m}"], holm=False) for m in sec)
                             + " |")
    for t, per in doc.get("letters", {}).items():
        lines += ["", f"## Letters named ({t}, pooled)", "", "| model | counts | most named (share) |", "|---|---|---|"]
        for who, lt in per.items():
            lines.append(f"| {who} | {lt['counts']} | {lt['mode']} ({lt['mode_share']:.2f}) |")
    lines += ["", "## Cost (measured in this run)", "",
              "| arm | task | pairs kept / planned (trained seeds) | optimizer steps | wall s / step | CPU s / step | "
              "CPU s / step per seed | evaluation wall s / CPU s |", "|---|---|---|---|---|---|---|---|"]
    untrained_lines = []
    for a in plan["arms"]:
        for t in tasks:
            c = doc["costs"][f"{a['name']}|{t}"]
            wps, cps = c["wall_s_per_step"], c["cpu_s_per_step"]
            note = f" (untrained in seeds {c['untrained_seeds']}: no pair kept)" if c["untrained_seeds"] else ""
            pairs = "none trained" if _untrained_everywhere(c) else f"{c['pairs_kept']} / {c['pairs_planned']}"
            seeds = ", ".join(f"{s}: {'n/a' if v['cpu_s_per_step'] is None else format(v['cpu_s_per_step'], '.1f')}"
                              for s, v in c["per_seed"].items())
            lines.append(f"| {a['name']}{note} | {t} | {pairs} | {c['steps']} | "
                         f"{'n/a' if wps is None else f'{wps:.2f}'} | {'n/a' if cps is None else f'{cps:.2f}'} | "
                         f"{seeds} | {c['evaluation']['wall_s']:.0f} / {c['evaluation']['cpu_s']:.0f} |")
            untrained_lines += [f"| {a['name']} | {t} | {s} | {str(why).replace('|', '/')} |"
                                for s, why in c["untrained_reasons"].items()]
    if untrained_lines:
        lines += ["", "## Untrained arms (the MIPO error, per seed)", "", "| arm | task | seed | reason |",
                  "|---|---|---|---|", *untrained_lines]
    lines += ["", "## Decision (pre-registered rule)", "", doc["conclusion"], "",
              f"Total {doc['wall_s']:.0f} s wall, {doc['cpu_s']:.0f} CPU-s of this process and its children "
              f"(stages read back from an earlier run are not counted), {doc['cores']} cores. Every stage as "
              f"recorded when it ran, whichever run and machine: {doc['stage_totals']['wall_s']:.0f} s wall, "
              f"{doc['stage_totals']['cpu_s']:.0f} CPU-s.", ""]
    return "\n".join(lines)
