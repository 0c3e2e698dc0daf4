"""POPI's GRPO dataset: preference_summary's prompt and history fitting, the user's held-out pair, bad rows."""

from pathlib import Path

import pytest

from axolotl_mipo.args import MIPODatasetConfig
from axolotl_mipo.errors import MIPODataError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "presets"
QUERY = [{"role": "user", "content": "What should I cook tonight?"}]
CHOSEN, REJECTED = "A quick vegan stir-fry with tofu.", "A steak, medium rare."


# -- the GRPO dataset ------------------------------------------------------------------------------------

def _examples(on_bad_row="raise"):
    from axolotl_mipo.data.rows import load_examples

    return load_examples([MIPODatasetConfig(path=str(FIXTURES / "community_alignment.csv"),
                                            format="community_alignment", max_items=2)], on_bad_row=on_bad_row)


def test_rows_use_preference_summarys_prompt_and_carry_the_pair(tiny_model_and_tokenizer):
    from axolotl_mipo.pipeline.summary import DEFAULT_TEMPLATE, summary_prompt
    from axolotl_mipo.popi.data import summarizer_rows

    _, tok = tiny_model_and_tokenizer
    examples = [ex for ex in _examples() if ex.human_pair is not None]
    rows, report = summarizer_rows(examples, tok, max_words=40)
    assert len(rows) == len(examples) == report.rows_out and not report.skipped
    for ex, row in zip(examples, rows):
        rendered = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        assert rendered == summary_prompt(tok, ex.context, DEFAULT_TEMPLATE, 40)
        assert (row["popi_chosen"], row["popi_rejected"]) == ex.human_pair
        assert row["popi_query"] == ex.message_dicts() and row["popi_user"] == ex.user_id
        assert ex.human_pair[0] not in row["prompt"][0]["content"]  # the held-out answer is not in the history


def test_rows_fit_long_histories_like_preference_summary(tiny_model_and_tokenizer):
    from axolotl_mipo.popi.data import summarizer_rows

    _, tok = tiny_model_and_tokenizer
    examples = [ex for ex in _examples() if ex.human_pair is not None]
    from axolotl_mipo.pipeline.summary import DEFAULT_TEMPLATE, summary_prompt

    limit = len(tok(summary_prompt(tok, "", DEFAULT_TEMPLATE, 60), add_special_tokens=False)["input_ids"]) + 20
    rows, report = summarizer_rows(examples, tok, max_prompt_tokens=limit)
    assert report.truncated_histories > 0
    for row in rows:
        text = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        assert len(tok(text, add_special_tokens=False)["input_ids"]) <= limit


def test_row_without_pair_is_an_error_naming_it_or_a_counted_skip(tiny_model_and_tokenizer):
    from axolotl_mipo.popi.data import summarizer_rows

    _, tok = tiny_model_and_tokenizer
    examples = _examples()
    bad = next(ex for ex in examples if ex.human_pair is None)
    with pytest.raises(MIPODataError, match=rf"row {bad.index}.*held-out human pair.*on_bad_row: skip"):
        summarizer_rows(examples, tok)
    rows, report = summarizer_rows(examples, tok, on_bad_row="skip")
    assert len(rows) == len(examples) - 1
    assert report.skipped == {"without a held-out human pair (chosen/rejected)": 1}
    assert "skipped: 1 without a held-out human pair" in report.summary()


def test_no_usable_row_at_all_is_an_error(tiny_model_and_tokenizer):
    from dataclasses import replace

    from axolotl_mipo.popi.data import summarizer_rows

    _, tok = tiny_model_and_tokenizer
    examples = [replace(ex, context="") for ex in _examples()]
    with pytest.raises(MIPODataError, match="no row can train the summarizer.*without a user history"):
        summarizer_rows(examples, tok, on_bad_row="skip")


# -- the plugin's config checks --------------------------------------------------------------------------
