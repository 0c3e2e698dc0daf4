"""The prism preset (PRISM): the survey joined to the conversations, bad rows."""

import json
import shutil

import pytest

from axolotl_mipo.data.rows import LoadReport, load_examples
from axolotl_mipo.errors import MIPODataError
from tests.data.presets import FIX, cfg, jsonl


def test_prism_joins_survey_and_conversations():
    exs = load_examples([cfg(FIX / "prism", "prism")])
    assert [e.user_id for e in exs] == ["user0", "user1", "user0"]
    ex = exs[0]
    assert ex.messages == (("user", "Is coffee bad for me?"),)
    assert "self description: I value honesty" in ex.context and "system string: Be direct" in ex.context
    assert "factuality=100" in ex.context
    # best vs worst score of the FIRST turn (the later turn's response is never used)
    assert ex.human_pair == ("Moderate coffee is fine [source].", "Coffee is evil.")
    # a tie at the top goes to the response the user continued with (if_chosen)
    assert exs[1].human_pair == ("A long joke.", "Dry facts.")
    # all first-turn scores equal: no pair, the row is still usable for generation
    assert exs[2].human_pair is None and exs[2].context == ex.context
    first = load_examples([cfg(FIX / "prism", "prism", rejected_response="first")])[0]
    assert first.human_pair == ("Moderate coffee is fine [source].", "Coffee is evil.")
    demo = load_examples([cfg(FIX / "prism", "prism", context_parts=["age", "location"])])[0]
    assert demo.context == "age: 25-34 years old\nlocation: birth_country=Kenya, reside_country=United Kingdom"


def test_prism_folder_laid_out_like_the_hub_goes_through_datasets():
    direct = load_examples([cfg(FIX / "prism", "prism")])
    hub = load_examples([cfg(FIX / "prism_hub", "prism")])  # README configs: survey/conversations .jsonl
    assert [(e.context, e.messages, e.human_pair, e.user_id) for e in hub] == \
        [(e.context, e.messages, e.human_pair, e.user_id) for e in direct]


def test_prism_bad_rows(tmp_path):
    shutil.copytree(FIX / "prism", tmp_path / "p")
    convs = [json.loads(line) for line in (tmp_path / "p" / "conversations.jsonl").read_text().splitlines()]
    convs[1]["user_id"] = "nobody"
    del convs[2]["opening_prompt"]
    jsonl(tmp_path / "p" / "conversations.jsonl", convs)
    with pytest.raises(MIPODataError, match=r"conversations.jsonl'.*row 1.*'user_id'.*'nobody'.*survey"):
        load_examples([cfg(tmp_path / "p", "prism")])
    rep = LoadReport()
    exs = load_examples([cfg(tmp_path / "p", "prism")], on_bad_row="skip", report=rep)
    assert len(exs) == 1 and rep.skipped == {"no row in the survey": 1, "missing": 1}
    with pytest.raises(MIPODataError, match=r"field 'religion'"):
        load_examples([cfg(FIX / "prism", "prism", context_parts=["religion"])])
