"""The persona set for real models: unique queries per user, held-out users, checkers that can fail."""

import json

import pytest

from axolotl_mipo.data.example import Example
from axolotl_mipo.evaluation.metrics import preference_satisfaction
from experiments.tasks import personas as P


def test_rows_have_unique_queries_per_user_and_readable_preferences():
    rows = P.make_personas(48, 8, seed=3)
    assert len(rows) == 384 and len({r["query"] for r in rows}) == 384
    users = {r["user_id"]: r["preferences"] for r in rows}
    assert len({tuple(p.values()) for p in users.values()}) == 48  # no two users want the same
    assert sum(p["language"] == "en" for p in users.values()) == 24
    for r in rows:
        assert P.preferences_from_context(r["context"]) == r["preferences"]
    assert P.make_personas(48, 8, seed=3) == rows
    assert P.make_personas(48, 8, seed=4) != rows


def test_split_holds_out_whole_users():
    train, held = P.split_by_user(P.make_personas(12, 4, seed=0), 4, seed=0)
    assert len(held) == 16 and len(train) == 32
    assert not {r["user_id"] for r in train} & {r["user_id"] for r in held}
    assert not {r["query"] for r in train} & {r["query"] for r in held}


PREFS = {"language": "en", "format": "bullets", "max_words": 20, "topic": "cooking", "register": "formal"}


@pytest.mark.parametrize("text, failed", [
    ("- Cook the pasta for your dinner.\n- Try this recipe with the family.", set()),
    ("Cook the pasta for your dinner and try this recipe with the family.", {"format"}),
    ("- Cook the pasta for your dinner!\n- It's a great recipe for the family.", {"register"}),
    ("- Go for a walk in the park with the family.\n- Read a book, it is good for you.", {"topic"}),
    ("- Cuisinez une recette pour vous et votre famille.\n- Le repas est prêt avec des amis.", {"language"}),
    ("- Cook the pasta for your dinner and the whole family.\n- Try this recipe with the children and the "
     "neighbours, it is a good way to spend time together in the kitchen on a quiet day.", {"max_words"}),
    ("", {"language", "format", "max_words", "topic", "register"}),  # an empty answer obeys nothing
])
def test_checkers_pass_and_fail_one_preference_at_a_time(text, failed):
    checks = P.check_response(text, PREFS)
    assert {d for d, ok in checks.items() if not ok} == failed


def test_casual_register_and_languages():
    casual = dict(PREFS, register="casual", format="prose", language="es")
    assert P.check_response("¡Hola! Cocina una receta con tu familia, es muy fácil.", casual) == {
        "language": True, "format": True, "max_words": True, "topic": True, "register": True}
    assert P.detect_language("Vous pouvez préparer une recette avec des amis.") == "fr"
    assert P.detect_language("12 34") is None
    sat = preference_satisfaction(["- Cook a meal for the family.\n- Bake the bread with your recipe.", "no"],
                                  [PREFS, PREFS], P.check_response, P.DIMENSIONS)
    assert sat["all"] == 0.5 and sat["topic"] == 0.5


def test_a_row_without_checkable_fields_is_an_error_naming_it(tmp_path):
    rows = P.make_personas(2, 2, seed=0)
    bad = [dict(r) for r in rows]
    del bad[2]["preferences"]["topic"]
    with pytest.raises(P.PersonaSetError, match=r"row 2 \(user 'persona_001'\).*lack \['topic'\]"):
        P.validate_rows(bad)
    bad = [dict(r) for r in rows]
    bad[1] = dict(bad[1], preferences=dict(bad[1]["preferences"], max_words="short"))
    with pytest.raises(P.PersonaSetError, match=r"row 1 .*max_words"):
        P.validate_rows(bad)
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "preferences"}) for r in rows))
    with pytest.raises(P.PersonaSetError, match=r"p.jsonl row 0 .*no 'preferences'"):
        P.read_jsonl(path)


def test_checker_reads_preferences_back_from_the_context_and_refuses_unknown_rows():
    rows = P.make_personas(2, 1, seed=1)
    exs = [Example(index=i, messages=(("user", r["query"]),), context=r["context"]) for i, r in enumerate(rows)]
    out = P.persona_checker(["hello", "hello"], exs)
    assert set(out) == set(P.DIMENSIONS) | {"all"}
    exs[1] = Example(index=7, messages=(("user", "q"),), context="I like cats.")
    with pytest.raises(P.PersonaSetError, match="row 7"):
        P.persona_checker(["hello", "hello"], exs)
