"""The lamp preset (LaMP, LongLaMP): the outputs file, items by date, every text field."""

import json

import pytest

from axolotl_mipo.data.rows import load_examples
from axolotl_mipo.errors import MIPODataError
from tests.data.presets import FIX, cfg


def test_lamp_outputs_file_is_joined_by_id_and_items_are_picked_by_date():
    exs = load_examples([cfg(FIX / "lamp_questions.json", "lamp", outputs_file=str(FIX / "lamp_outputs.json"),
                             item_order="newest", max_items=3)])
    ex = exs[0]
    assert ex.meta["reference"] == "Council backs more bike lanes"
    assert ex.messages[0][1].startswith("Generate a headline")
    lines = ex.context.splitlines()[1:]
    # newest first among dated items; the undated one only after every dated one
    assert [ln.split("title: ")[1].split(";")[0] for ln in lines] == \
        ["Why I bike to work", "Trams return downtown", "Parks for everyone"]
    assert "4002" not in ex.context  # item ids are not profile text
    oldest = load_examples([cfg(FIX / "lamp_questions.json", "lamp", item_order="oldest", max_items=4)])[0]
    assert [ln.split("title: ")[1].split(";")[0] for ln in oldest.context.splitlines()[1:]] == \
        ["Parks for everyone", "Trams return downtown", "Why I bike to work", "Buses are back"]
    last = load_examples([cfg(FIX / "lamp_questions.json", "lamp", item_order="last", max_items=1)])[0]
    assert "Trams return downtown" in last.context and "Parks" not in last.context
    assert "reference" not in load_examples([cfg(FIX / "lamp_questions.json", "lamp")])[0].meta


def test_longlamp_renders_every_text_field_of_its_items():
    ex = load_examples([cfg(FIX / "longlamp_product_review.jsonl", "lamp")])[0]
    for piece in ("reviewText: Great blender, loud though.", "summary: Loud but good", "overall: 4.0",
                  "description: Headphones"):
        assert piece in ex.context
    assert ex.meta["reference"] == "Best shoes I've owned." and ex.user_id == "A1"


def test_lamp_question_without_gold_output_names_the_id(tmp_path):
    q = json.loads((FIX / "lamp_questions.json").read_text())
    q.append({"id": "999", "input": "x", "profile": [{"text": "t"}]})
    (tmp_path / "q.json").write_text(json.dumps(q))
    with pytest.raises(MIPODataError, match=r"row 2.*'id'.*999.*no gold output"):
        load_examples([cfg(tmp_path / "q.json", "lamp", outputs_file=str(FIX / "lamp_outputs.json"))])
