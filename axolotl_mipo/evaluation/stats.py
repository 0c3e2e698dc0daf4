"""Statistics for pre-registered comparisons across seeds: paired differences, bootstrap intervals, Holm.

Pure Python (no numpy, no torch), so the figures of a benchmark script can be recomputed and tested
anywhere. Non-finite values and ``None`` are dropped before anything is computed; an empty input gives
``(None, None, None)`` rather than an exception, so a metric a run could not produce shows as ``n/a``.

* :func:`paired_differences` — after minus before, element by element (the same seeds, or rows).
* :func:`bootstrap_mean_ci` — the mean and a percentile bootstrap interval of a list of numbers
  (e.g. one paired difference per seed).
* :func:`hier_bootstrap` — the pooled mean and a percentile interval from a two-level bootstrap:
  seeds drawn with replacement, then rows within each drawn seed. Used on per-row paired differences,
  it carries both the seed-to-seed spread and the row sampling noise.
* :func:`holm` — Holm's step-down adjustment of p-values (family-wise error control).
* :func:`bootstrap_p_value` — a two-sided bootstrap p-value for "the mean is 0", from the same draws
  as the interval, for Holm.
* :func:`paired_effect` — what a benchmark reports for one effect: the hierarchical interval and
  p-value of per-row paired differences, each seed's mean difference, and a bootstrap over those.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

Interval = tuple[float | None, float | None, float | None]

__all__ = ["Interval", "bootstrap_mean_ci", "bootstrap_p_value", "hier_bootstrap", "hier_bootstrap_test", "holm",
           "paired_differences", "paired_effect"]


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def paired_differences(after: Sequence[float | None], before: Sequence[float | None]) -> list[float | None]:
    """``after[i] - before[i]``; ``None`` where either side is missing or not finite."""
    if len(after) != len(before):
        raise ValueError(f"paired differences need the same units on both sides: {len(after)} vs {len(before)}")
    out: list[float | None] = []
    for a, b in zip(after, before):
        ok = a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
        out.append(float(a) - float(b) if ok else None)
    return out


def _percentiles(stats: list[float], level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    stats = sorted(stats)
    n = len(stats)
    lo = stats[max(0, math.floor((1 - level) / 2 * n))]
    hi = stats[min(n - 1, math.ceil((1 + level) / 2 * n) - 1)]
    return lo, hi


def _mean_draws(values: list[float], resamples: int, rng: random.Random) -> list[float]:
    n = len(values)
    return [sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples)]


def bootstrap_mean_ci(values: Sequence[float | None], resamples: int = 2000, level: float = 0.95,
                      seed: int = 0) -> Interval:
    """Mean of ``values`` and its percentile bootstrap interval (``resamples`` draws with replacement)."""
    vals = _finite(values)
    if not vals:
        return None, None, None
    point = sum(vals) / len(vals)
    lo, hi = _percentiles(_mean_draws(vals, resamples, random.Random(seed)), level)
    return point, lo, hi


def _hier_draws(groups: list[list[float]], resamples: int, rng: random.Random) -> list[float]:
    stats = []
    for _ in range(resamples):
        tot, n = 0.0, 0
        for _ in groups:
            vals = groups[rng.randrange(len(groups))]
            tot += sum(vals[rng.randrange(len(vals))] for _ in vals)
            n += len(vals)
        stats.append(tot / n)
    return stats


def _groups(per_seed) -> list[list[float]]:
    return [g for g in (_finite(vals) for vals in per_seed) if g]


def hier_bootstrap(per_seed: Sequence[Sequence[float | None]], resamples: int = 2000, level: float = 0.95,
                   seed: int = 0) -> Interval:
    """Pooled mean and a percentile interval: seeds drawn with replacement, then rows within each seed."""
    groups = _groups(per_seed)
    if not groups:
        return None, None, None
    point = sum(map(sum, groups)) / sum(map(len, groups))
    lo, hi = _percentiles(_hier_draws(groups, resamples, random.Random(seed)), level)
    return point, lo, hi


def bootstrap_p_value(per_seed: Sequence[Sequence[float | None]], resamples: int = 2000, seed: int = 0) -> float | None:
    """Two-sided p-value of "the pooled mean is 0" by the hierarchical bootstrap (percentile inversion).

    ``2 * min(share of draws <= 0, share of draws >= 0)``, at least ``1 / resamples``, at most 1. With the
    same ``seed`` and ``resamples`` it uses the same draws as :func:`hier_bootstrap`, so an interval that
    excludes 0 at level ``1 - a`` goes with a p-value below ``a`` (up to one draw).
    """
    groups = _groups(per_seed)
    if not groups:
        return None
    draws = _hier_draws(groups, resamples, random.Random(seed))
    below = sum(d <= 0 for d in draws) / resamples
    above = sum(d >= 0 for d in draws) / resamples
    return min(1.0, max(1.0 / resamples, 2 * min(below, above)))


def hier_bootstrap_test(per_seed: Sequence[Sequence[float | None]], resamples: int = 2000, level: float = 0.95,
                        seed: int = 0) -> dict:
    """:func:`hier_bootstrap` and :func:`bootstrap_p_value` from one set of draws (half the work):
    ``{"mean", "ci": [lo, hi], "p"}`` (``None`` values when there is no data).

    The smallest p-value is ``1 / resamples``: with Holm over m tests, ``resamples`` must exceed
    ``m / alpha`` for any test to be able to pass.
    """
    groups = _groups(per_seed)
    if not groups:
        return {"mean": None, "ci": [None, None], "p": None}
    draws = _hier_draws(groups, resamples, random.Random(seed))
    below = sum(d <= 0 for d in draws) / resamples
    above = sum(d >= 0 for d in draws) / resamples
    lo, hi = _percentiles(draws, level)
    return {"mean": sum(map(sum, groups)) / sum(map(len, groups)), "ci": [lo, hi],
            "p": min(1.0, max(1.0 / resamples, 2 * min(below, above)))}


def paired_effect(per_seed_diffs: Sequence[Sequence[float | None] | None], resamples: int = 2000,
                  level: float = 0.95) -> dict:
    """One effect from per-row paired differences per seed (a seed that has none is ``None`` and left out):
    :func:`hier_bootstrap_test`'s ``mean``/``ci``/``p``, ``per_seed`` (each seed's mean difference) and
    ``seed_bootstrap`` (:func:`bootstrap_mean_ci` over those means; it under-covers with few seeds)."""
    diffs = [d for d in per_seed_diffs if d is not None]
    seed_means = []
    for d in diffs:
        vals = _finite(d)
        seed_means.append(sum(vals) / len(vals) if vals else None)
    return {**hier_bootstrap_test(diffs, resamples, level), "per_seed": seed_means,
            "seed_bootstrap": list(bootstrap_mean_ci(seed_means, resamples, level))}


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the input order (``None`` stays ``None``, not counted).

    Reject hypothesis i at family-wise level ``a`` when its adjusted p-value is ``<= a``.
    """
    idx = [i for i, p in enumerate(p_values) if p is not None]
    for i in idx:
        if not 0 <= p_values[i] <= 1:
            raise ValueError(f"p-value {p_values[i]} at position {i} is not in [0, 1]")
    m = len(idx)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out
