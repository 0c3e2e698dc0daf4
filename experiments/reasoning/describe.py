#!/usr/bin/env python
"""What the numeric task's answers look like, read from the study's committed stage files. Exploratory.

    python -m experiments.reasoning.describe [--stages experiments/reasoning/results/stages] [--write]

Not part of the pre-registered plan (it counts no test and decides nothing): written after the results,
to say *how* the answers changed, since accuracy alone cannot tell a model that learned to add from one
that learned to write its sum before ``####``. Per model, over every seed's held-out responses (greedy):

- ``sum_before_marker``: a worked sum ``a + b = c`` appears before the first ``####`` (the base model
  mostly writes ``#### <an operand>`` first, the pilot's typical error);
- ``right_sum_written``: ``= <the gold answer>`` appears before any invented next exemplar, i.e. the
  response computed the right sum somewhere, whatever it then wrote after ``####``;
- ``runs_on``: after answering, the response goes on into an invented ``Example N:`` or ``Question:``
  (the few-shot prefix's pattern), which costs tokens: the scorer reads the first ``####``, so the
  answer still counts;
- ``limit_hit``: the response ran to the token limit (the evaluation's own flag).

``--write`` puts the table in ``experiments/reasoning/results/responses.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUM = re.compile(r"\d+\s*\+\s*\d+\s*=\s*\d+")
INVENTED = re.compile(r"Example \d+\s*:|Question:")


def describe_response(text: str, gold: str) -> dict[str, bool]:
    """The three shape flags of one numeric response (see the module's docstring)."""
    head = text.split("####", 1)[0]
    own = INVENTED.split(text, 1)[0]
    return {"sum_before_marker": bool(SUM.search(head)),
            "right_sum_written": bool(re.search(r"=\s*\$?" + re.escape(gold) + r"(?!\d|\.\d)", own)),
            "runs_on": bool(INVENTED.search(text))}


def describe(stages: Path, task: str = "numeric") -> dict[str, dict[str, float]]:
    """Shares per model (``base`` and each arm with an evaluation file), pooled over the seeds' held-out
    responses, plus the number of responses."""
    models: dict[str, list[dict]] = {}
    for seed_dir in sorted(stages.glob("seed*")):
        for f in sorted((seed_dir / task).glob("*.json")):
            if f.name.endswith(".train.json"):
                continue
            d = json.loads(f.read_text())
            for text, gold, lim in zip(d["responses"], d["gold"], d["per_row"]["limit_hit"]):
                models.setdefault(f.stem, []).append({**describe_response(text, gold), "limit_hit": bool(lim)})
    if not models:
        raise SystemExit(f"no evaluation files under {stages}/seed*/{task}/: pass --stages, the study's --out or "
                         "experiments/reasoning/results/stages")
    order = ["base", *sorted(m for m in models if m != "base")]
    return {m: {"responses": len(models[m]),
                **{k: sum(r[k] for r in models[m]) / len(models[m]) for k in models[m][0]}} for m in order}


def markdown(shares: dict[str, dict[str, float]]) -> str:
    keys = [k for k in next(iter(shares.values())) if k != "responses"]
    lines = ["# What the numeric answers look like (exploratory, after the results)", "",
             "Shares of held-out greedy responses, pooled over seeds; `python -m experiments.reasoning.describe`. "
             "Not pre-registered: no test, no decision.", "",
             "| model | responses | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for m, v in shares.items():
        lines.append(f"| {m} | {v['responses']} | " + " | ".join(f"{v[k]:.3f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default=str(HERE / "results" / "stages"))
    ap.add_argument("--write", action="store_true", help="write results/responses.md")
    a = ap.parse_args(argv)
    md = markdown(describe(Path(a.stages)))
    if a.write:
        (HERE / "results" / "responses.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
