"""Evaluation on the synthetic tasks' held-out rows, with the per-row figures the statistics pair.

Used by the grid and the POPI study (rows of :mod:`experiments.tasks.synthetic_unique` or of the first
task with a ``context``, ``reference`` and ``preferences`` each).
"""

from __future__ import annotations

DIMS = ("length", "formality", "topic", "format")


def evaluate_synthetic(model, tok, rows, ev: dict, seed: int, reference_scores=None):
    """:func:`~axolotl_mipo.evaluation.evaluate.evaluate_model` on ``rows`` with the synthetic checker.

    ``ev``: ``k``, ``max_new_tokens``, ``temperature``, ``top_p``, ``batch_size``. The references are not
    identified (``identify_references=False``); ``reference_scores`` are the base model's human-pair scores
    (an adapter's implicit reward is measured against them)."""
    from axolotl_mipo.evaluation.evaluate import evaluate_model
    from experiments.tasks import synthetic_unique as U
    from experiments.tasks.synthetic import synthetic_checker

    return evaluate_model(model, tok, U.to_examples(rows), k_values=ev["k"], max_new_tokens=ev["max_new_tokens"],
                          temperature=ev["temperature"], top_p=ev["top_p"], seed=seed, batch_size=ev["batch_size"],
                          checker=synthetic_checker, identify_references=False, progress=False,
                          reference_scores=reference_scores)


def synthetic_per_row(res, rows) -> dict[str, list]:
    """Per held-out row: every figure the statistics pair (0/1 for identification, checks and pairs)."""
    from experiments.tasks import synthetic as S

    out: dict[str, list] = {"mi_mean": list(res.mi_per_row)}
    for k, ident in res.extra.get("identified_per_row", {}).items():
        out[f"accuracy@K{k}"] = [int(x) for x in ident]
    checks = [S.check_preferences(y, r["preferences"]) for y, r in zip(res.responses, rows)]
    for d in DIMS:
        out[f"pref_{d}"] = [int(c[d]) for c in checks]
    out["pref_all"] = [int(all(c.values())) for c in checks]
    ps = res.extra.get("pair_scores")
    if ps and ps["rows"]:
        # aligned with the held-out rows (every held-out row has a pair), so differences pair row by row
        if len(ps["rows"]) != len(rows):
            raise RuntimeError(f"{len(ps['rows'])} scored pairs for {len(rows)} held-out rows")
        out["pref_accuracy_with_context"] = [int(c[0] > r[0]) for c, r in zip(ps["chosen_ctx"], ps["rejected_ctx"])]
        out["pref_accuracy_without_context"] = [int(c[0] > r[0])
                                                for c, r in zip(ps["chosen_noctx"], ps["rejected_noctx"])]
    return out
