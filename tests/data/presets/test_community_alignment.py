"""The community_alignment preset: demographics, the pair, the annotator history."""


import pytest

from axolotl_mipo.data.rows import load_examples
from axolotl_mipo.errors import MIPODataError
from tests.data.presets import FIX, cfg


def test_community_alignment_demographics_pair_and_history():
    exs = load_examples([cfg(FIX / "community_alignment.csv", "community_alignment")])
    ex = exs[0]
    assert ex.messages == (("user", "How do I save money?"),) and ex.user_id == "ann1"
    assert ex.context.splitlines() == ["age: 18-34", "gender: Woman", "education level: Bachelor",
                                       "political: Liberal", "ethnicity: Asian", "country: India"]
    assert ex.human_pair[0] == "Cut coffee, invest the rest."
    assert ex.human_pair[1] in ("Budget monthly.", "Ask your parents.", "Buy lottery tickets.")
    assert exs[3].human_pair is None and exs[3].context == "age: 35-45\ncountry: France"  # no preference given
    first = load_examples([cfg(FIX / "community_alignment.csv", "community_alignment", rejected_response="first")])
    assert first[0].human_pair == ("Cut coffee, invest the rest.", "Budget monthly.")
    assert first[2].human_pair == ("Budget monthly.", "Cut coffee, invest the rest.")
    hist = load_examples([cfg(FIX / "community_alignment.csv", "community_alignment", max_items=5)])
    # the same annotator's choice on their OTHER conversation, never this one's
    assert 'to "Plan a trip to Goa" they preferred: "Beach, then food, then rest."' in hist[0].context
    assert "How do I save money" not in hist[0].context
    assert "other conversations" not in hist[2].context  # ann2 has no other conversation


def test_community_alignment_bad_preferred_letter(tmp_path):
    text = (FIX / "community_alignment.csv").read_text().replace("response_b,B was practical", "response_z,x")
    (tmp_path / "ca.csv").write_text(text)
    with pytest.raises(MIPODataError, match=r"ca.csv'.*row 0.*first_turn_preferred_response"):
        load_examples([cfg(tmp_path / "ca.csv", "community_alignment")])
