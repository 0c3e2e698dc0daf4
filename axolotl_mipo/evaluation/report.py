"""Write an evaluation report: one JSON file, PNG plots and a short Markdown summary.

Input is a list of :class:`EvalRun` — one per (label, seed), where the label is
what is compared (``"before"``/``"after"`` training, or model names). Several
runs with the same label are seeds; the summary gives their mean and sample
standard deviation, so a reader sees the spread before trusting a difference.

Files written to ``out_dir``:

* ``report.json`` — every figure of every run, the per-label summary, notes;
  non-finite numbers become ``null`` (JSON has no NaN);
* ``mi_hist.png`` — per-row pointwise MI, one histogram per label (seeds pooled);
* ``accuracy_per_k.png`` — context identification accuracy against K, with the
  chance line 1/K;
* ``summary.md`` — a table of every figure per label (and the difference when
  exactly two labels are compared).

Plots need matplotlib; without it they are skipped and the JSON says so.
Plots are drawn on ``matplotlib.figure.Figure`` objects, never ``pyplot``, so
writing a report changes no global matplotlib state in the caller's process.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)


@dataclass
class EvalRun:
    """The figures of one evaluated model under one seed.

    ``figures`` holds scalar metrics by name (e.g. ``mi_mean``, ``rouge_l``,
    ``self_bleu``, ``judge_win_rate``); ``accuracy_per_k`` maps K to the context
    identification accuracy (pass the strict figure,
    :attr:`IdentificationResult.accuracy`, unless noted otherwise) and is also
    summarised as ``accuracy@K`` figures;
    ``mi_per_row`` feeds the MI histogram; ``extra`` is kept in the JSON as is
    (judge tallies, preference satisfaction, settings).
    """

    label: str
    figures: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    mi_per_row: list[float] | None = None
    accuracy_per_k: dict[int, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def all_figures(self) -> dict[str, float]:
        out = dict(self.figures)
        for k, acc in sorted((self.accuracy_per_k or {}).items()):
            out.setdefault(f"accuracy@K{int(k)}", acc)
        return out


def _finite(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _json_safe(obj):
    """JSON-safe copy: NaN/inf -> None, tuple -> list, keys -> str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return _json_safe(obj.to_dict())
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy / torch scalars
        return _json_safe(obj.item())
    return obj


def _labels(runs: Sequence[EvalRun]) -> list[str]:
    return list(dict.fromkeys(r.label for r in runs))


def summarize(runs: Sequence[EvalRun]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{label: {figure: {mean, std, n, values}}}`` across the runs (seeds) of each label.

    ``std`` is the sample standard deviation (n-1), ``None`` for a single seed;
    non-finite values are left out of mean and std but counted in ``values``.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for label in _labels(runs):
        group = [r for r in runs if r.label == label]
        names = list(dict.fromkeys(n for r in group for n in r.all_figures()))
        table = {}
        for name in names:
            values = [r.all_figures().get(name) for r in group]
            vals = [float(v) for v in values if _finite(v)]
            mean = sum(vals) / len(vals) if vals else None
            std = (math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
                   if len(vals) > 1 else None)
            table[name] = {"mean": mean, "std": std, "n": len(vals), "values": values}
        out[label] = table
    return out


def _fmt(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _cell(stat: dict | None) -> str:
    if not stat or stat["mean"] is None:
        return "–"
    if stat["n"] > 1:
        return f"{_fmt(stat['mean'])} ± {_fmt(stat['std'])} (n={stat['n']})"
    return _fmt(stat["mean"])


def markdown_summary(summary: dict, title: str, notes: Sequence[str] = (), plots: Sequence[str] = ()) -> str:
    labels = list(summary)
    names = list(dict.fromkeys(n for lab in labels for n in summary[lab]))
    two = len(labels) == 2
    head = ["figure", *labels] + ([f"Δ ({labels[1]} − {labels[0]})"] if two else [])
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        cells = [name] + [_cell(summary[lab].get(name)) for lab in labels]
        if two:
            a, b = summary[labels[0]].get(name), summary[labels[1]].get(name)
            ok = a and b and a["mean"] is not None and b["mean"] is not None
            cells.append(_fmt(b["mean"] - a["mean"]) if ok else "–")
        lines.append("| " + " | ".join(cells) + " |")
    if any(s["n"] > 1 for lab in labels for s in summary[lab].values()):
        lines += ["", "Cells with several seeds: mean ± sample standard deviation across seeds."]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    if plots:
        lines += ["", *[f"![{Path(p).stem}]({Path(p).name})" for p in plots]]
    return "\n".join(lines) + "\n"


def _plot_mi(runs: Sequence[EvalRun], path: Path) -> bool:
    from matplotlib.figure import Figure

    groups = {lab: [v for r in runs if r.label == lab for v in (r.mi_per_row or []) if _finite(v)]
              for lab in _labels(runs)}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        return False
    lo = min(min(v) for v in groups.values())
    hi = max(max(v) for v in groups.values())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    bins = [lo + (hi - lo) * i / 30 for i in range(31)]
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    for i, (lab, vals) in enumerate(groups.items()):
        color = f"C{i}"
        ax.hist(vals, bins=bins, alpha=0.5, color=color, label=f"{lab} (n={len(vals)})")
        ax.axvline(sum(vals) / len(vals), color=color, linestyle="--", linewidth=1)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("pointwise MI: log p(y|x,c) − log p(y|x)  [nats]")
    ax.set_ylabel("responses")
    ax.set_title("Pointwise conditional MI (dashed: means)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return True


def _plot_accuracy(runs: Sequence[EvalRun], path: Path) -> bool:
    from matplotlib.figure import Figure

    if not any(r.accuracy_per_k for r in runs):
        return False
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    all_k: set[int] = set()
    for i, lab in enumerate(_labels(runs)):
        per_k: dict[int, list[float]] = {}
        for r in runs:
            if r.label == lab:
                for k, acc in (r.accuracy_per_k or {}).items():
                    if _finite(acc):
                        per_k.setdefault(int(k), []).append(float(acc))
        if not per_k:
            continue
        ks = sorted(per_k)
        all_k.update(ks)
        means = [sum(per_k[k]) / len(per_k[k]) for k in ks]
        errs = [math.sqrt(sum((v - m) ** 2 for v in per_k[k]) / (len(per_k[k]) - 1)) if len(per_k[k]) > 1 else 0.0
                for k, m in zip(ks, means)]
        ax.errorbar(ks, means, yerr=errs, marker="o", capsize=3, color=f"C{i}", label=lab)
    ks = sorted(all_k)
    grid = [ks[0] + (ks[-1] - ks[0]) * i / 100 for i in range(101)]
    ax.plot(grid, [1.0 / k for k in grid], linestyle=":", color="gray", label="chance (1/K)")
    ax.set_xlabel("K (candidate contexts)")
    ax.set_ylabel("identification accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(ks)
    ax.set_title("Context identification accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return True


def write_report(
    out_dir: str | Path,
    runs: Sequence[EvalRun],
    title: str = "axolotl-mipo evaluation",
    notes: Sequence[str] = (),
    settings: dict | None = None,
) -> dict[str, Path]:
    """Write ``report.json``, the plots and ``summary.md``; returns their paths by name."""
    if not runs:
        raise ValueError("no runs to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes = list(notes)
    paths: dict[str, Path] = {}
    try:
        import matplotlib  # noqa: F401

        have_mpl = True
    except ImportError:
        have_mpl = False
        msg = "matplotlib is not installed; plots skipped (pip install matplotlib)"
        LOG.info(f"mipo eval: {msg}")
        notes.append(msg)
    if have_mpl:
        for name, plot in (("mi_hist", _plot_mi), ("accuracy_per_k", _plot_accuracy)):
            p = out / f"{name}.png"
            if plot(runs, p):
                paths[name] = p
    summary = summarize(runs)
    report = {
        "title": title,
        "settings": settings or {},
        "runs": [asdict(r) for r in runs],
        "summary": summary,
        "plots": [p.name for p in paths.values()],
        "notes": notes,
    }
    paths["json"] = out / "report.json"
    paths["json"].write_text(json.dumps(_json_safe(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    paths["markdown"] = out / "summary.md"
    plot_files = [p for k, p in paths.items() if k not in ("json", "markdown")]
    paths["markdown"].write_text(markdown_summary(summary, title, notes, plot_files), encoding="utf-8")
    return paths


def accuracy_lines(paired: dict[str, dict[str, float]], base: str = "base", adapter: str = "adapter") -> list[str]:
    """Summary lines for answer accuracy: what the figures mean, and each mode's paired difference."""
    lines = ["answer_accuracy_*: share of rows with a gold answer answered correctly (an answer that cannot be "
             "parsed counts as wrong), greedy and sampled at mipo.generation's temperature; _ci_low/_ci_high: "
             "Wilson 95% interval; answer_unparseable_*: share of responses with no answer in them"]
    for mode, d in paired.items():
        lines.append(f"answer accuracy ({mode}), {adapter} − {base}, paired by row: {_fmt(d['diff'])} "
                     f"[{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}] (95%, Newcombe hybrid score interval; "
                     f"{int(d['n'])} rows, {int(d['adapter_only'])} right only with {adapter}, "
                     f"{int(d['base_only'])} only with {base})")
    return lines
