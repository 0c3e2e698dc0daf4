"""The alignx preset (AlignX): the card fields, the user-chosen parts, parquet and hub-laid-out folders."""

import json
import shutil

import pytest

from axolotl_mipo.data.rows import LoadReport, load_examples
from axolotl_mipo.errors import MIPODataError
from tests.data.presets import FIX, cfg


def test_alignx_maps_the_card_fields():
    exs = load_examples([cfg(FIX / "alignx.jsonl", "alignx")])
    assert len(exs) == 3
    ex = exs[0]
    assert ex.messages == (("user", "What should I cook tonight?"),)
    assert ex.human_pair == ("A quick vegan stir-fry with tofu.", "A steak, medium rare.")
    assert "29-year-old vegan" in ex.context
    assert 'on "Best protein sources?": Lentils and tofu, always.' in ex.context
    assert 'preferred "Chickpea curry." over "Beef burger."' in ex.context
    assert "0.5" not in ex.context  # the 90-value direction vectors are not rendered
    # a row with no past pairs / no comments renders what it has
    assert "Responses the user preferred" not in exs[1].context
    assert "Comments the user wrote" not in exs[2].context and "The Ramones" in exs[2].context


def test_alignx_parts_and_item_count_are_chosen_by_the_user():
    [ex] = load_examples([cfg(FIX / "alignx.jsonl", "alignx", context_parts=["comments"], max_items=1,
                              max_rows=1)])
    assert ex.context == 'Comments the user wrote:\n- on "Best protein sources?": Lentils and tofu, always.'
    # the row whose only chosen part is empty is an error naming the context, or a counted skip
    with pytest.raises(MIPODataError, match=r"row 2.*'context'.*empty"):
        load_examples([cfg(FIX / "alignx.jsonl", "alignx", context_parts=["comments"])])
    rep = LoadReport()
    exs = load_examples([cfg(FIX / "alignx.jsonl", "alignx", context_parts=["comments"])], on_bad_row="skip",
                        report=rep)
    assert len(exs) == 2 and sum(rep.skipped.values()) == 1


def test_alignx_parquet_is_read_by_record_batch(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (FIX / "alignx.jsonl").read_text().splitlines()]
    for r in rows:  # parquet needs one struct type per list; the hub's parquet carries the same keys everywhere
        for p in r["Pair-wise Comparative Feedback"]:
            p.setdefault("Preference Direction", [0.5] * 90)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train-00000.parquet")
    a = load_examples([cfg(tmp_path / "train-00000.parquet", "alignx")])
    b = load_examples([cfg(FIX / "alignx.jsonl", "alignx")])
    assert [(e.context, e.messages, e.human_pair) for e in a] == [(e.context, e.messages, e.human_pair) for e in b]


def test_alignx_hub_laid_out_folder_goes_through_datasets(tmp_path):
    # datasets stores the pair lists (whose item keys differ between rows) as JSON text: read the same
    shutil.copy(FIX / "alignx.jsonl", tmp_path / "train.jsonl")
    (tmp_path / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                        "    path: train.jsonl\n---\n")
    a = load_examples([cfg(tmp_path, "alignx")])
    b = load_examples([cfg(FIX / "alignx.jsonl", "alignx")])
    assert [(e.context, e.messages, e.human_pair) for e in a] == [(e.context, e.messages, e.human_pair) for e in b]
