"""The constrained derangement: found whenever one exists, seeded, and fast at 200k rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPOStrategyError
from axolotl_mipo.pairing import (
    constrained_derangement,
)

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


def rows(n: int, *, contexts=None, queries=None) -> list[Example]:
    contexts = contexts if contexts is not None else [f"user {i % 7}" for i in range(n)]
    queries = queries if queries is not None else [f"query {i}" for i in range(n)]
    return [Example(index=100 + i, messages=(("user", queries[i]),), context=contexts[i], source="t")
            for i in range(n)]


def has_valid_permutation(keys: list[np.ndarray], n: int) -> bool:
    """Exact feasibility: a perfect matching of rows to allowed partners (Kuhn's augmenting paths)."""
    allowed = [[j for j in range(n) if j != i and all(k[i] != k[j] for k in keys)] for i in range(n)]
    match_of: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for j in allowed[i]:
            if j not in seen:
                seen.add(j)
                if j not in match_of or augment(match_of[j], seen):
                    match_of[j] = i
                    return True
        return False

    return all(augment(i, set()) for i in range(n))


def assert_valid_derangement(sigma: np.ndarray, keys: list[np.ndarray], n: int) -> None:
    assert sigma.shape == (n,)
    assert sorted(sigma.tolist()) == list(range(n)), "not a permutation"
    assert (sigma != np.arange(n)).all(), "fixed point"
    for k in keys:
        assert (k[sigma] != k).all(), "paired two rows with the same key"


# -- constrained_derangement -----------------------------------------------------------------------

@SETTINGS
@given(st.integers(2, 60).flatmap(lambda n: st.lists(st.integers(0, 5), min_size=n, max_size=n)), seeds)
def test_derangement_single_key_exists_iff_no_key_covers_more_than_half(keys, seed):
    k = np.array(keys)
    n = k.size
    top = np.bincount(k).max()
    if top > n - top:
        with pytest.raises(MIPOStrategyError, match="more than half"):
            constrained_derangement([k], seed)
    else:
        assert_valid_derangement(constrained_derangement([k], seed), [k], n)


@SETTINGS
@given(st.integers(2, 24).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 3), min_size=n, max_size=n),
    st.lists(st.integers(0, 4), min_size=n, max_size=n))), seeds)
def test_derangement_two_keys_found_whenever_one_exists(key_lists, seed):
    keys = [np.array(k) for k in key_lists]
    n = keys[0].size
    if has_valid_permutation(keys, n):
        assert_valid_derangement(constrained_derangement(keys, seed), keys, n)
    else:
        with pytest.raises(MIPOStrategyError):
            constrained_derangement(keys, seed)


def test_derangement_accepts_strings_and_no_keys():
    sigma = constrained_derangement([["a", "b", "a", "b"]], 3)
    assert_valid_derangement(sigma, [np.array([0, 1, 0, 1])], 4)
    assert_valid_derangement(constrained_derangement([], 0, n=5), [], 5)
    # tuples (e.g. Example.messages) are keys, not rows of a 2-D array
    msgs = [(("user", "a"),), (("user", "b"),), (("user", "a"),), (("user", "c"),)]
    assert_valid_derangement(constrained_derangement([msgs], 1), [np.array([0, 1, 0, 2])], 4)
    with pytest.raises(MIPOStrategyError, match="at least 2 rows"):
        constrained_derangement([[7]], 0)


def test_derangement_is_seeded():
    keys = [np.arange(1000) % 10]
    a, b = constrained_derangement(keys, 1), constrained_derangement(keys, 1)
    assert (a == b).all()
    assert (a != constrained_derangement(keys, 2)).any()


def test_derangement_at_the_half_way_limit():
    # one prompt covers exactly half of the rows: only cross-group pairings are valid
    n = 10_000
    k = np.r_[np.zeros(n // 2, dtype=np.int64), np.arange(1, n // 2 + 1)]
    sigma = constrained_derangement([k, np.arange(n) % 3], 5)
    assert_valid_derangement(sigma, [k, np.arange(n) % 3], n)
    # and it is not forced into mutual swaps
    assert (sigma[sigma] == np.arange(n)).mean() < 0.05


def test_derangement_200k_rows_completes():
    rng = np.random.default_rng(0)
    n = 200_000
    keys = [rng.integers(0, 50, n), rng.integers(0, 5000, n)]
    assert_valid_derangement(constrained_derangement(keys, 0), keys, n)
