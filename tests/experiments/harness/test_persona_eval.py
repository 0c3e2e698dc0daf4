"""The persona task's per-row figures and checker-ordered pairs (no model: a hand-made evaluation result)."""

from types import SimpleNamespace

from experiments.harness.persona_eval import persona_examples, persona_per_row, preference_pairs

PREFS = {"language": "en", "format": "prose", "max_words": 20, "topic": "cooking", "register": "formal"}
ROWS = [{"context": "I cook.", "query": f"q{i}", "user_id": f"u{i}", "preferences": PREFS} for i in range(2)]


def test_per_row_figures_are_aligned_with_the_rows_and_binary():
    res = SimpleNamespace(responses=["Cook a simple meal for the family.", "- a\n- b!"], mi_per_row=[0.5, -0.1],
                          extra={"identified_per_row": {4: [True, False]}})
    rows = persona_per_row(res, ROWS)
    assert rows["mi"] == [0.5, -0.1] and rows["acc@K4"] == [1, 0]
    assert rows["pref_format"] == [1, 0] and set(rows) >= {"pref_language", "pref_topic", "pref_all"}
    assert all(len(v) == 2 for v in rows.values())


def test_pairs_keep_only_rows_the_checkers_order_and_examples_carry_the_persona():
    pairs = preference_pairs(ROWS, ["- a\n- b!", "same"], ["Cook a simple meal for the family.", "same"])
    assert [p["row"] for p in pairs] == [0] and not pairs[0]["better_is_with_persona"]
    ex = persona_examples(ROWS)
    assert ex[1].context == "I cook." and ex[1].messages == (("user", "q1"),) and ex[1].meta["user_id"] == "u1"
