"""Seeded derangements that avoid pairing rows with equal keys.

The reasoning variant of MIPO takes as the rejected response of row ``i`` the
response the model gave to a *different* prompt. The authors shuffle with no
seed and no guard, so a row can get its own response back (or the response to
a duplicate of its prompt), which gives DPO a pair with no signal or a
contradictory one. :func:`constrained_derangement` returns a permutation
``sigma`` with

* ``sigma[i] != i`` for every ``i`` (no fixed point), and
* ``keys[sigma[i]] != keys[i]`` for every key array given (e.g. the prompt id and
  the response id of each row),

drawn from a :class:`numpy.random.Generator` seeded with ``seed``, so the same
inputs and seed always give the same permutation.

Method (vectorised, so that a million rows take well under a second): draw a
uniform random permutation, then repair the positions that break a constraint
by swapping each with a partner position, accepting a swap only when *both*
positions are valid afterwards. Every accepted swap fixes at least one broken
position and breaks none, so the number of broken positions never grows. Half
of the partners are drawn among the broken positions themselves, because near
the end the swaps that help are often between two broken positions. Swaps of
one round touch disjoint positions, so they are applied at once.

When one key value covers close to half of the rows, a random start leaves
almost no helpful partners (about ``1 - 2 * share`` of the rows) and the repair
crawls; then the start is a grouped shift that already satisfies that key
(:func:`_grouped_shift`), and the repair only fixes the other keys. The loop is
bounded; if it stalls it restarts (alternating the two starts) a few times
and then gives up with :class:`MIPOStrategyError`.

The result is not exactly uniform over all valid derangements (the repair
favours some), which does not matter here: all that is needed is a seeded,
unbiased-enough partner that is never the row itself or a copy of it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from axolotl_mipo.errors import MIPOStrategyError

__all__ = ["constrained_derangement", "dominant_key", "factorize", "seeded_rng"]

# A round costs O(broken positions); most inputs finish in a few dozen rounds.
_MAX_ROUNDS = 4000
# Rounds without progress before a restart: long enough for the last few broken
# positions to find their rare valid partners, short enough to stay fast.
_STALL_ROUNDS = 400
_RESTARTS = 4
# Above this share of rows under one key value, a random start leaves too few
# helpful swap partners (about 1 - 2*share of the rows), so start from a
# construction that already satisfies that key.
_TIGHT_SHARE = 0.4


def seeded_rng(seed: int | None) -> np.random.Generator:
    """``numpy.random.default_rng(seed)``, refusing seeds numpy would reject with a message that names the key."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise MIPOStrategyError(f"the pairing seed must be a non-negative integer, got {seed!r}; set mipo.seed")
    return np.random.default_rng(seed)


def factorize(values: Iterable[Hashable]) -> np.ndarray:
    """Integer ids (``int64``), equal exactly where the values are equal, numbered by first appearance."""
    ids: dict[Hashable, int] = {}
    setdefault = ids.setdefault
    return np.fromiter((setdefault(v, len(ids)) for v in values), dtype=np.int64)


def dominant_key(keys: np.ndarray) -> tuple[int, int, int]:
    """``(row, count, n)``: the first row holding the most frequent key, how many rows hold it, and ``n``.

    A derangement that never pairs two rows with the same key exists only if
    ``count <= n - count``: every row holding that key needs a partner outside
    the group, and there are only ``n - count`` of those.
    """
    keys = _as_ids(keys)
    if keys.size == 0:
        return -1, 0, 0
    counts = np.bincount(keys)
    top = int(np.argmax(counts))
    row = int(np.flatnonzero(keys == top)[0])
    return row, int(counts[top]), int(keys.size)


def _as_ids(keys) -> np.ndarray:
    if not isinstance(keys, np.ndarray):
        # a list of tuples must stay a list of keys, not become a 2-D array
        return factorize(keys)
    if keys.ndim != 1:
        raise ValueError(f"each key array must be one-dimensional, got shape {keys.shape}")
    if keys.dtype.kind in "iu" and (keys.size == 0 or keys.min() >= 0):
        return keys.astype(np.int64, copy=False)
    # strings, objects, negative ints: renumber so that bincount works
    return factorize(keys.tolist())


def _grouped_shift(keys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random permutation that already satisfies one key, however close it is to the half-way limit.

    Rows are laid out group by group (random group order, random order inside
    each group) and row ``src[t]`` gets ``tgt[(t + M) % n]``, where ``M`` is the
    largest group and ``tgt`` is a second, independently shuffled layout with
    the same blocks. A shift by ``M`` always leaves a block of size ``<= M``
    when ``M <= n / 2``, so no row lands in its own group. Shuffling ``src`` and
    ``tgt`` independently keeps the result from being an involution (``i`` and
    its partner swapping responses), which a single layout would force when
    ``M == n / 2``.
    """
    n = keys.size
    counts = np.bincount(keys)
    rank = np.empty(counts.size, dtype=np.int64)
    rank[rng.permutation(counts.size)] = np.arange(counts.size)
    src = np.lexsort((rng.random(n), rank[keys]))
    tgt = np.lexsort((rng.random(n), rank[keys]))
    perm = np.empty(n, dtype=np.int64)
    perm[src] = tgt[(np.arange(n) + int(counts.max())) % n]
    return perm


def constrained_derangement(keys_list: Sequence[Sequence[Hashable] | np.ndarray], seed: int | None = None,
                            *, n: int | None = None) -> np.ndarray:
    """A seeded permutation ``sigma`` with no fixed point and ``k[sigma[i]] != k[i]`` for every key array ``k``.

    Args:
        keys_list: one array of per-row keys per constraint, each of length
            ``n`` (ints, strings or any hashable values; equal values mean
            "must not be paired"). May be empty, then only fixed points are
            excluded and ``n`` must be given.
        seed: seeds :func:`numpy.random.default_rng`; same inputs and seed,
            same result.
        n: the number of rows, needed only when ``keys_list`` is empty.

    Returns:
        ``int64`` array ``sigma`` of length ``n``: row ``i``'s partner is ``sigma[i]``.

    Raises:
        MIPOStrategyError: fewer than two rows, a key value held by more than
            half of the rows (no derangement exists; the message names the
            key array, a row holding that value and the count), or the repair
            did not converge (the combined constraints leave (almost) no valid
            permutation).
    """
    keys = [_as_ids(k) for k in keys_list]
    if n is None:
        if not keys:
            raise ValueError("constrained_derangement needs n when keys_list is empty")
        n = int(keys[0].size)
    for j, k in enumerate(keys):
        if k.size != n:
            raise ValueError(f"key array {j} has {k.size} entries, expected {n}")
    if n < 2:
        raise MIPOStrategyError(
            f"a derangement needs at least 2 rows, got {n}; every row must be paired with a different row"
        )
    dominance = [dominant_key(k) for k in keys]
    for j, (row, count, _) in enumerate(dominance):
        if count > n - count:
            raise MIPOStrategyError(
                f"key array {j}: the value at row {row} is shared by {count} of {n} rows, more than half, so "
                f"those rows cannot all be paired with rows holding a different value"
            )

    rng = seeded_rng(seed)
    # the key closest to the half-way limit decides how to start (see _grouped_shift)
    shares = [count / n for _, count, _ in dominance]
    tight = int(np.argmax(shares)) if keys else -1
    construct_first = tight >= 0 and shares[tight] > _TIGHT_SHARE

    def ok(rows: np.ndarray, partners: np.ndarray) -> np.ndarray:
        mask = rows != partners
        for k in keys:
            mask &= k[rows] != k[partners]
        return mask

    everyone = np.arange(n, dtype=np.int64)
    best = n
    for attempt in range(_RESTARTS):
        if tight >= 0 and (attempt % 2 == 0) == construct_first:
            perm = _grouped_shift(keys[tight], rng)
        else:
            perm = rng.permutation(n).astype(np.int64, copy=False)
        bad = np.flatnonzero(~ok(everyone, perm))
        best, stalled = bad.size, 0
        for _ in range(_MAX_ROUNDS):
            m = bad.size
            if m == 0:
                return perm
            from_bad = rng.random(m) < 0.5
            other = np.where(from_bad, bad[rng.integers(0, m, m)], rng.integers(0, n, m))
            # a swap is taken only if both ends end up valid, so progress is monotone
            good = (other != bad) & ok(bad, perm[other]) & ok(other, perm[bad])
            a, b = bad[good], other[good]
            if a.size:
                # keep the first proposal touching each position, so the swaps are disjoint
                flat = np.stack([a, b], axis=1).ravel()
                first = np.zeros(flat.size, dtype=bool)
                first[np.unique(flat, return_index=True)[1]] = True
                keep = first[0::2] & first[1::2]
                a, b = a[keep], b[keep]
                tmp = perm[a].copy()
                perm[a] = perm[b]
                perm[b] = tmp
                # only positions that were broken can still be broken
                bad = bad[~ok(bad, perm[bad])]
            if bad.size < best:
                best, stalled = bad.size, 0
            else:
                stalled += 1
                if stalled >= _STALL_ROUNDS:
                    break
    raise MIPOStrategyError(
        f"could not find a pairing of {n} rows in which no row meets its own key in any of {len(keys)} "
        f"key arrays ({best} rows left unpaired after {_RESTARTS} attempts); the constraints leave almost no "
        "valid pairing: add rows with other prompts, or deduplicate repeated prompts and responses"
    )
