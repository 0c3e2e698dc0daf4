"""The unique-query synthetic task (experiments.tasks.synthetic_unique)."""

import pytest

from experiments.tasks import synthetic as S
from experiments.tasks import synthetic_unique as U


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_no_query_is_shared_and_the_split_is_per_user(seed):
    rows = U.make_unique_task(32, 8, 2, seed)
    train, heldout = U.split_rows(rows)
    assert len(train) == 256 and len(heldout) == 64
    owners = {}
    for r in rows:
        owners.setdefault(r["query"], set()).add(r["user_id"])
    assert all(len(u) == 1 for u in owners.values())
    assert {r["user_id"] for r in heldout} == {r["user_id"] for r in train}
    assert not {r["query"] for r in heldout} & {r["query"] for r in train}
    # every query is topic-neutral: it says nothing a checker could use
    topic_words = set().union(*S.TOPIC_KEYWORDS.values())
    assert not any(set(S.tokenize(r["query"])) & topic_words for r in rows)


def test_contexts_vary_per_row_but_state_the_users_preferences():
    rows = U.make_unique_task(8, 6, 2, 3)
    by_user = {}
    for r in rows:
        by_user.setdefault(r["user_id"], []).append(r["context"])
    assert all(len(set(c)) > 1 for c in by_user.values())
    for r in rows:
        for d in S.DIMENSIONS:
            phrases = S._CONTEXT_PHRASES[r["preferences"][d]] + U._EXTRA_PHRASES[r["preferences"][d]]
            assert any(p in r["context"] for p in phrases), (d, r["context"])


def test_references_and_human_pairs_are_checkable():
    rows = U.make_unique_task(32, 2, 3, 5)
    for r in rows:
        assert all(S.check_preferences(r["reference"], r["preferences"]).values())
        if r["split"] == "heldout":
            assert all(S.check_preferences(r["human_chosen"], r["preferences"]).values())
            broken = [d for d, ok in S.check_preferences(r["human_rejected"], r["preferences"]).items() if not ok]
            assert sorted(broken) == r["rejected_breaks"] and 1 <= len(broken) <= 2
        else:
            assert "human_chosen" not in r
    ex = U.to_examples([r for r in rows if r["split"] == "heldout"])
    assert all(e.human_pair is not None and e.meta["preferences"] for e in ex)


def test_same_seed_same_rows_and_clear_errors():
    assert U.make_unique_task(4, 2, 1, 9) == U.make_unique_task(4, 2, 1, 9)
    assert U.make_unique_task(4, 2, 1, 9) != U.make_unique_task(4, 2, 1, 10)
    with pytest.raises(ValueError, match="distinct queries"):
        U.make_unique_task(32, 30, 10, 0)
    with pytest.raises(ValueError, match="at least one row"):
        U.make_unique_task(4, 0, 0, 0)
