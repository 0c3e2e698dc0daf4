"""The exploratory description of the numeric answers, on hand-written responses in the shapes the study saw."""

import json

import pytest

from experiments.reasoning import describe as D


@pytest.mark.parametrize("text,gold,flags", [
    # the base model's typical answer: an operand after ####, no sum
    ("#### 3\n\nStep 1: Determine the total number of shells.", "8", (False, False, False)),
    # an adapter's: the sum first, then an invented next exemplar
    ("Olivia has 5 shells. She finds 3 more, so she has 5 + 3 = 8 shells.\n#### 8\n\nExample 4:\nQuestion: A bat",
     "8", (True, True, True)),
    # a sum written after the marker counts as the right sum, not as one before the marker
    ("#### 5\nGrace has 5 + 3 = 8 candles.", "8", (False, True, False)),
    # = 18 is not = 1; a sum inside the invented exemplar is not this question's
    ("2 + 16 = 18\n#### 18", "1", (True, False, False)),
    # a sentence's period after the sum is not a decimal point
    ("Noah has 2 + 3 = 5.\n#### 5", "5", (True, True, False)),
    ("#### 4\nExample 4:\nQuestion: 3 + 4 = 7", "7", (False, False, True)),
])
def test_describe_response(text, gold, flags):
    got = D.describe_response(text, gold)
    assert (got["sum_before_marker"], got["right_sum_written"], got["runs_on"]) == flags


def test_describe_pools_seeds_per_model_and_skips_training_files(tmp_path):
    def write(seed, name, responses, golds, lim):
        d = tmp_path / f"seed{seed}" / "numeric"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.json").write_text(json.dumps({"responses": responses, "gold": golds,
                                                    "per_row": {"limit_hit": lim}}))

    write(20, "base", ["#### 3", "#### 2"], ["5", "4"], [0, 1])
    write(21, "base", ["1 + 4 = 5\n#### 5"], ["5"], [0])
    write(20, "mismatched_prompt", ["2 + 3 = 5\n#### 5\nExample 4:"], ["5"], [1])
    (tmp_path / "seed20" / "numeric" / "mismatched_prompt.train.json").write_text("{}")
    shares = D.describe(tmp_path)
    assert list(shares) == ["base", "mismatched_prompt"]
    assert shares["base"] == pytest.approx({"responses": 3, "sum_before_marker": 1 / 3, "right_sum_written": 1 / 3,
                                            "runs_on": 0.0, "limit_hit": 1 / 3})
    assert shares["mismatched_prompt"]["runs_on"] == 1.0
    assert "| base | 3 | 0.333 | 0.333 | 0.000 | 0.333 |" in D.markdown(shares)


def test_describe_names_the_flag_when_there_is_nothing_to_read(tmp_path):
    with pytest.raises(SystemExit, match="--stages"):
        D.describe(tmp_path)
