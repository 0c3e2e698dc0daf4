"""The synthetic task: deterministic, references obey their preferences, the checkers."""

from __future__ import annotations

import pytest

from axolotl_mipo.evaluation.metrics import preference_satisfaction
from experiments.tasks import synthetic as S
from experiments.tasks.synthetic import synthetic_preferences

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)


def test_synthetic_task_is_deterministic():
    a = S.make_task(n_users=10, queries_per_user=3, seed=7)
    assert a == S.make_task(n_users=10, queries_per_user=3, seed=7)
    assert a != S.make_task(n_users=10, queries_per_user=3, seed=8)
    assert len(a) == 30 and set(a[0]) >= {"context", "query", "reference", "user_id"}
    users = S.make_users(10, seed=7)
    assert len({u.context for u in users}) == 10
    assert len({tuple(u.preferences().values()) for u in users}) == 10
    with pytest.raises(ValueError):
        S.make_users(S.MAX_USERS + 1)


@pytest.mark.parametrize("seed", range(3))
def test_references_obey_own_preferences_only(seed):
    rows = S.make_task(n_users=S.MAX_USERS, queries_per_user=len(S.QUERIES), seed=seed)
    users = S.users_from_rows(rows)
    for row in rows:
        assert all(S.check_preferences(row["reference"], users[row["user_id"]]).values()), row
        for uid, other in users.items():
            if uid != row["user_id"]:
                assert not all(S.check_preferences(row["reference"], other).values())
    refs = [r["reference"] for r in rows]
    sat = preference_satisfaction(refs, [users[r["user_id"]] for r in rows], S.check_preferences, S.DIMENSIONS)
    assert sat == {"length": 1.0, "formality": 1.0, "topic": 1.0, "format": 1.0, "all": 1.0}


def test_checkers_on_hand_written_responses():
    user = {"length": "short", "formality": "casual", "topic": "music", "format": "prose"}
    assert S.check_preferences("Hey, go to a jazz concert!", user) == dict.fromkeys(S.DIMENSIONS, True)
    bad = S.check_preferences("- I would recommend cooking pasta.\n- Furthermore, bake bread.", user)
    assert bad == {"length": True, "formality": False, "topic": False, "format": False}
    assert not S.check_preferences("Hey, jazz " + "music " * 40, user)["length"]
    assert S.check_preferences("Hey, jazz " + "music " * 60, {**user, "length": "long"})["length"]
    assert not S.check_preferences("Hey, a jazz song and a football match!", user)["topic"]
    assert not S.check_preferences("", user)["length"]


def test_synthetic_rows_load_through_the_row_reader(tmp_path):
    from axolotl_mipo.args import MIPODatasetConfig
    from axolotl_mipo.data.rows import load_examples

    rows = S.make_task(n_users=4, queries_per_user=2, seed=0)
    path = S.write_jsonl(rows, tmp_path / "task.jsonl")
    loaded = load_examples([MIPODatasetConfig(path=str(path), reference_field="reference")])
    mine = S.to_examples(rows)
    assert [(e.messages, e.context, e.meta["reference"]) for e in loaded] == \
        [(e.messages, e.context, e.meta["reference"]) for e in mine]


def test_synthetic_preferences_read_back_from_the_context():
    for seed in range(3):
        for user in S.make_users(S.MAX_USERS, seed):
            assert synthetic_preferences(user.context) == user.preferences()
    assert synthetic_preferences("I like cats.") is None
