"""experiments/first_task/run.py: the before/after table and its pass criterion (Δ mean above the seed spread)."""

import pytest

from experiments.first_task import run as P


def _result(seed, before, after):
    figs = {name: 0.0 for name in P.HEADLINE}
    return {"seed": seed, "before": {"label": "before", "seed": seed, "figures": {**figs, "mi_mean": before}},
            "after": {"label": "after", "seed": seed, "figures": {**figs, "mi_mean": after}}}


@pytest.mark.fast
def test_a_rise_counts_only_beyond_the_larger_seed_spread():
    md, verdict = P.table([_result(0, 0.2, 0.6), _result(1, 0.4, 0.8), _result(2, 0.3, 0.7)])
    mi = verdict["mi_mean"]
    assert mi["delta"] == pytest.approx(0.4) and mi["spread"] == pytest.approx(0.1) and mi["rises_beyond_spread"]
    assert not verdict["accuracy@K4"]["rises_beyond_spread"]  # no change is no rise
    assert "| **mi_mean** | 0.300 ± 0.100 | 0.700 ± 0.100 | +0.400 | 0.100 | yes | +0.400, +0.400, +0.400 |" in md
    _, noisy = P.table([_result(0, 0.0, 0.1), _result(1, 1.0, 1.1)])
    assert not noisy["mi_mean"]["rises_beyond_spread"]  # +0.1 against a spread of 0.71
