"""Input rows: the three formats, and errors that name the field, the row and the fix."""

import json

import pytest

from axolotl_mipo.args import MIPODatasetConfig
from axolotl_mipo.data.rows import load_examples, split_row
from axolotl_mipo.errors import MIPODataError

pytestmark = pytest.mark.fast  # pure Python: no model, no subprocess (pytest -m fast)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_context_query_rows(tmp_path):
    p = _write_jsonl(tmp_path / "d.jsonl", [{"persona": "likes jazz", "q": "hi", "ref": "hello"}])
    cfg = MIPODatasetConfig(path=str(p), context_field="persona", query_field="q", reference_field="ref")
    [ex] = load_examples([cfg])
    assert ex.context == "likes jazz"
    assert ex.messages == (("user", "hi"),)
    assert ex.meta["reference"] == "hello"
    assert ex.index == 0 and ex.source == str(p)


def test_messages_rows_system_is_context_and_final_assistant_is_reference():
    cfg = MIPODatasetConfig(path="x", format="messages")
    row = {
        "messages": [
            {"role": "system", "content": "I am vegan."},
            {"role": "user", "content": "dinner?"},
            {"role": "assistant", "content": "tofu"},
            {"role": "user", "content": "and dessert?"},
            {"role": "assistant", "content": "sorbet"},
        ]
    }
    ex = split_row(row, cfg, 3, "x")
    assert ex.context == "I am vegan."
    assert ex.messages == (("user", "dinner?"), ("assistant", "tofu"), ("user", "and dessert?"))
    assert ex.meta["reference"] == "sorbet"


def test_messages_rows_with_context_field():
    cfg = MIPODatasetConfig(path="x", format="messages", context_field="profile")
    ex = split_row({"profile": "p", "messages": [{"role": "user", "content": "q"}]}, cfg, 0, "x")
    assert ex.context == "p" and ex.messages == (("user", "q"),)


def test_prompt_rows_have_no_context():
    cfg = MIPODatasetConfig(path="x", format="prompt")
    ex = split_row({"prompt": "2+2?"}, cfg, 0, "x")
    assert ex.context is None and ex.messages == (("user", "2+2?"),)


@pytest.mark.parametrize(
    "row, fmt, field, needle",
    [
        ({"query": "q"}, "context_query", "context", "missing"),
        ({"context": "c"}, "context_query", "query", "missing"),
        ({"context": "  \n", "query": "q"}, "context_query", "context", "empty"),
        ({"context": "c", "query": ""}, "context_query", "query", "empty"),
        ({"context": 5, "query": "q"}, "context_query", "context", "must be a string"),
        ({"messages": [{"role": "user", "content": "q"}]}, "messages", "messages", "role 'system'"),
        ({"messages": []}, "messages", "messages", "non-empty list"),
        ({"messages": [{"role": "system", "content": "c"}, {"role": "assistant", "content": "a"}]},
         "messages", "messages", "end with a user turn"),
        ({"prompt": None}, "prompt", "prompt", "missing"),
    ],
)
def test_bad_rows_name_field_and_row(row, fmt, field, needle):
    cfg = MIPODatasetConfig(path="data.jsonl", format=fmt)
    with pytest.raises(MIPODataError) as err:
        split_row(row, cfg, 7, "data.jsonl")
    msg = str(err.value)
    assert "row 7" in msg and f"field {field!r}" in msg and needle in msg
    assert err.value.row == 7 and err.value.field == field


def test_missing_field_message_says_how_to_fix():
    cfg = MIPODatasetConfig(path="d.jsonl")
    with pytest.raises(MIPODataError, match=r"mipo.datasets\[\].context_field"):
        split_row({"persona": "c", "query": "q"}, cfg, 0, "d.jsonl")


def test_zero_rows(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("\n")
    with pytest.raises(MIPODataError, match="zero rows"):
        load_examples([MIPODatasetConfig(path=str(p))])


def test_broken_jsonl_line_is_named(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"context": "c", "query": "q"}\n{"context": "c", "query": \n', encoding="utf-8")
    with pytest.raises(MIPODataError, match="line 2 is not valid JSON"):
        load_examples([MIPODatasetConfig(path=str(p))])


def test_non_utf8_line_is_named(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"context": "c", "query": "q"}\n{"context": "\xff", "query": "q"}\n')
    with pytest.raises(MIPODataError, match="line 2 is not valid UTF-8"):
        load_examples([MIPODatasetConfig(path=str(p))])


def test_json_list_csv_and_max_rows(tmp_path):
    j = tmp_path / "d.json"
    j.write_text(json.dumps([{"context": f"c{i}", "query": "q"} for i in range(5)]))
    c = tmp_path / "d.csv"
    c.write_text("context,query\nc1,q1\nc2,q2\n")
    exs = load_examples([MIPODatasetConfig(path=str(j), max_rows=3), MIPODatasetConfig(path=str(c))])
    assert [e.context for e in exs] == ["c0", "c1", "c2", "c1", "c2"]
    assert [e.index for e in exs] == [0, 1, 2, 0, 1]


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(MIPODataError, match="mipo.datasets"):
        load_examples([MIPODatasetConfig(path=str(tmp_path / "nope" / "x.jsonl"))])


def test_skip_mode_counts_every_kind_of_bad_row(tmp_path):
    from axolotl_mipo.data.rows import LoadReport

    p = tmp_path / "d.jsonl"
    p.write_bytes(
        b'{"context": "c1", "query": "q1"}\n'
        b'{"context": "c1", "query": \n'  # broken JSON
        b'{"context": "\xff", "query": "q"}\n'  # not UTF-8
        b'{"query": "q2"}\n'  # missing context
        b'{"context": "   ", "query": "q3"}\n'  # whitespace only
        b'{"context": 3, "query": "q4"}\n'  # not a string
        b'{"context": "c1", "query": "q1"}\n'  # duplicate
        b'{"context": "c2", "query": "q5"}\n'
    )
    report = LoadReport()
    exs = load_examples([MIPODatasetConfig(path=str(p))], on_bad_row="skip", report=report)
    assert [(e.context, e.messages[0][1]) for e in exs] == [("c1", "q1"), ("c2", "q5")]
    assert report.rows_read == 8 and report.kept == 2 and report.duplicates == 1
    assert sum(report.skipped.values()) == 5
    assert report.skipped["not valid JSON"] == 1 and report.skipped["not valid UTF-8"] == 1


def test_skip_mode_with_nothing_left_is_an_error(tmp_path):
    p = _write_jsonl(tmp_path / "d.jsonl", [{"query": "q"}, {"context": "", "query": "q"}])
    with pytest.raises(MIPODataError, match="no usable rows"):
        load_examples([MIPODatasetConfig(path=str(p))], on_bad_row="skip")


def test_control_characters_are_removed_and_unicode_kept():
    cfg = MIPODatasetConfig(path="x")
    ex = split_row({"context": "caf\u00e9 \x00\x07likes\x1b[31m jazz \ud800\u4e2d", "query": "q\x0b?\n"}, cfg, 0, "x")
    assert ex.context == "caf\u00e9 likes[31m jazz \u4e2d"
    assert ex.messages == (("user", "q?\n"),)


def test_control_characters_only_is_empty():
    with pytest.raises(MIPODataError, match="empty"):
        split_row({"context": "\x00\x01\x02", "query": "q"}, MIPODatasetConfig(path="x"), 4, "x")


def test_duplicates_kept_when_dedupe_is_off(tmp_path):
    p = _write_jsonl(tmp_path / "d.jsonl", [{"context": "c", "query": "q"}] * 3)
    assert len(load_examples([MIPODatasetConfig(path=str(p))], dedupe=False)) == 3
    assert len(load_examples([MIPODatasetConfig(path=str(p))])) == 1


def test_human_pair_and_user_from_generic_fields(tmp_path):
    p = _write_jsonl(tmp_path / "d.jsonl", [
        {"context": "likes jazz", "query": "q1", "good": "jazz tip", "bad": "rock tip", "uid": 7},
        {"context": "likes jazz", "query": "q2", "good": None, "bad": None, "uid": 7},  # a row without a pair
        {"context": "likes jazz", "query": "q3", "good": "same", "bad": "same ", "uid": 7},  # no contrast: no pair
    ])
    cfg = MIPODatasetConfig(path=str(p), chosen_field="good", rejected_field="bad", user_field="uid")
    a, b, c = load_examples([cfg])
    assert a.human_pair == ("jazz tip", "rock tip") and a.user_id == "7"
    assert b.human_pair is None and c.human_pair is None and b.user_id == "7"


def test_messages_rows_read_the_human_pair_too():
    cfg = MIPODatasetConfig(path="x", format="messages", chosen_field="c", rejected_field="r")
    ex = split_row({"messages": [{"role": "system", "content": "ctx"}, {"role": "user", "content": "q"}],
                    "c": "yes", "r": "no"}, cfg, 0, "x")
    assert ex.human_pair == ("yes", "no")


@pytest.mark.parametrize("row,field,needle", [
    ({"context": "c", "query": "q", "good": "x"}, "bad", "fill both"),
    ({"context": "c", "query": "q", "good": "x", "bad": 3}, "bad", "must be a string"),
    ({"context": "c", "query": "q", "good": "x", "bad": "y", "uid": None}, "uid", "user's id"),
    ({"context": "c", "query": "q", "good": "x", "bad": "y", "uid": ["a"]}, "uid", "plain id"),
])
def test_bad_pair_or_user_fields_name_row_and_field(row, field, needle):
    cfg = MIPODatasetConfig(path="x", chosen_field="good", rejected_field="bad", user_field="uid")
    with pytest.raises(MIPODataError, match=needle) as e:
        split_row(row, cfg, 5, "x")
    assert e.value.field == field and e.value.row == 5


@pytest.mark.parametrize("kwargs,needle", [
    ({"chosen_field": "good"}, "rejected_field: is missing"),
    ({"rejected_field": "bad"}, "chosen_field: is missing"),
    ({"format": "alignx", "chosen_field": "a", "rejected_field": "b"}, "reads its own pairs"),
    ({"format": "prompt", "chosen_field": "a", "rejected_field": "b"}, "no user context"),
])
def test_pair_field_config_errors(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        MIPODatasetConfig(path="x", **kwargs)


def test_synthetic_unique_heldout_file_reads_back_its_pairs(tmp_path):
    from experiments.tasks import synthetic as S
    from experiments.tasks.synthetic_unique import make_unique_task, split_rows, to_examples

    _, held = split_rows(make_unique_task(4, 2, 1, seed=0))
    path = S.write_jsonl(held, tmp_path / "heldout.jsonl")
    cfg = MIPODatasetConfig(path=str(path), reference_field="reference", chosen_field="human_chosen",
                            rejected_field="human_rejected", user_field="user_id")
    loaded = load_examples([cfg])
    direct = to_examples(held)
    assert [ex.human_pair for ex in loaded] == [ex.human_pair for ex in direct]
    assert all(ex.human_pair for ex in loaded)
    assert [ex.user_id for ex in loaded] == [ex.user_id for ex in direct]


def test_prompt_rows_keep_a_gold_answer_for_evaluation_only():
    from axolotl_mipo.data.example import GOLD_ANSWER_KEY, GOLD_KIND_KEY

    cfg = MIPODatasetConfig(path="x", format="prompt", answer_field="answer", answer_kind="number")
    ex = split_row({"prompt": "Two plus two?", "answer": " 4 "}, cfg, 3, "d")
    assert ex.messages == (("user", "Two plus two?"),)  # the answer is not in the prompt
    assert (ex.meta[GOLD_ANSWER_KEY], ex.meta[GOLD_KIND_KEY]) == ("4", "number")
    assert split_row({"prompt": "q", "answer": 18.0}, cfg, 0, "d").meta[GOLD_ANSWER_KEY] == 18.0
    with pytest.raises(MIPODataError, match="row 5.*'answer'.*gold answer"):
        split_row({"prompt": "q"}, cfg, 5, "d")
    with pytest.raises(ValueError, match="answer_kind: is missing"):
        MIPODatasetConfig(path="x", format="prompt", answer_field="answer")
    with pytest.raises(ValueError, match="answer_field: is an option of format prompt"):
        MIPODatasetConfig(path="x", answer_field="answer", answer_kind="choice")
