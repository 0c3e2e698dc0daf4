"""The comparison statistics (axolotl_mipo.evaluation.stats) on data with known answers."""

import math
import random

import pytest

from axolotl_mipo.evaluation import stats as St


def test_paired_differences_are_after_minus_before_and_skip_missing():
    assert St.paired_differences([1.0, 0.5, None, 2.0], [0.25, 1.0, 3.0, float("nan")]) == [0.75, -0.5, None, None]
    with pytest.raises(ValueError, match="same units"):
        St.paired_differences([1.0], [1.0, 2.0])


def test_bootstrap_interval_of_a_constant_is_the_constant():
    assert St.bootstrap_mean_ci([0.3] * 7, resamples=200) == pytest.approx((0.3, 0.3, 0.3))


def test_bootstrap_interval_matches_the_normal_theory_width_on_a_known_sample():
    rng = random.Random(1)
    xs = [rng.gauss(2.0, 1.0) for _ in range(400)]
    point, lo, hi = St.bootstrap_mean_ci(xs, resamples=2000, seed=3)
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    half = 1.96 * sd / math.sqrt(len(xs))
    assert point == pytest.approx(mean)
    assert lo < mean < hi
    # the percentile interval of the mean of 400 normal draws is the textbook one within ~10%
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert St.bootstrap_mean_ci([None, float("inf")]) == (None, None, None)


def test_bootstrap_interval_is_the_sorted_draws_percentiles_on_two_points():
    # the mean of two draws from {0, 1}: 0 (1/4), 0.5 (1/2), 1 (1/4); a 95% interval spans [0, 1]
    point, lo, hi = St.bootstrap_mean_ci([0.0, 1.0], resamples=4000, seed=0)
    assert (point, lo, hi) == (0.5, 0.0, 1.0)
    # a 40% interval sits in the middle mass
    assert St.bootstrap_mean_ci([0.0, 1.0], resamples=4000, level=0.4, seed=0)[1:] == (0.5, 0.5)


def test_hierarchical_bootstrap_widens_with_seed_spread_and_pools_rows():
    tight = St.hier_bootstrap([[1.0, 1.2, 0.8] * 10, [1.1, 0.9, 1.0] * 10], 500)
    spread = St.hier_bootstrap([[0.0] * 30, [2.0] * 30], 500)
    assert tight[1] <= tight[0] <= tight[2] and tight[2] - tight[1] < 0.2
    assert spread[0] == pytest.approx(1.0) and spread[2] - spread[1] > 1.0
    # the pooled mean weights rows, not seeds
    assert St.hier_bootstrap([[1.0], [0.0, 0.0, 0.0]], 10)[0] == pytest.approx(0.25)
    assert St.hier_bootstrap([[], [float("nan")]], 10) == (None, None, None)


def test_bootstrap_p_value_small_for_a_clear_effect_and_large_for_none():
    clear = [[1.0 + 0.1 * (i % 3) for i in range(20)] for _ in range(5)]
    noise = [[(-1) ** i * 0.5 for i in range(20)] for _ in range(5)]
    assert St.bootstrap_p_value(clear, 1000) == pytest.approx(1 / 1000)
    assert St.bootstrap_p_value(noise, 1000) > 0.5
    assert St.bootstrap_p_value([[]], 10) is None


def test_holm_matches_the_textbook_example():
    # Holm (1979) step-down: sorted p 0.01, 0.02, 0.03, 0.04 with m = 4 -> 0.04, 0.06, 0.06, 0.06
    adj = St.holm([0.03, 0.01, 0.04, 0.02])
    assert adj == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert St.holm([0.5, None, 0.01]) == pytest.approx([0.5, None, 0.02])
    assert St.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="not in"):
        St.holm([1.5])


def test_one_set_of_draws_gives_the_interval_and_the_p_value():
    groups = [[0.2, 0.4, -0.1] * 5, [0.1, 0.3] * 6, [0.5, -0.2, 0.0] * 4]
    t = St.hier_bootstrap_test(groups, 400, 0.9, seed=2)
    assert (t["mean"], *t["ci"]) == pytest.approx(St.hier_bootstrap(groups, 400, 0.9, seed=2))
    assert t["p"] == pytest.approx(St.bootstrap_p_value(groups, 400, seed=2))
    assert St.hier_bootstrap_test([[None]], 10) == {"mean": None, "ci": [None, None], "p": None}


def test_paired_effect_reports_pooled_interval_seed_means_and_skips_missing_seeds():
    per_seed = [[0.1, 0.3], None, [0.2, None, 0.4], [None]]
    e = St.paired_effect(per_seed, resamples=500)
    assert e["mean"] == pytest.approx(0.25)
    assert e["per_seed"] == [pytest.approx(0.2), pytest.approx(0.3), None]
    assert e["ci"][0] <= e["mean"] <= e["ci"][1] and e["p"] is not None
    assert e["seed_bootstrap"][0] == pytest.approx(0.25)
    assert St.hier_bootstrap_test(per_seed[:1] + per_seed[2:], 500)["ci"] == e["ci"]
