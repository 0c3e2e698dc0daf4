"""extract_answer and the answer-key helpers: the rules of docs/reasoning.md, "Scoring answers"."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from axolotl_mipo.evaluation.answers import (
    choice_letter,
    extract_answer,
    gold_matches,
    is_correct,
    normalize_gold,
    normalize_number,
)

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("text, expected", [
    ("She has 3 + 4 = 7 apples, then buys 5 more: 12.\n#### 12", "12"),
    ("Numbers in the reasoning: 40, 2, 17. The final one is 99", "99"),  # no ####: the last number
    ("#### -3", "-3"),
    ("The temperature drops to \u22125 degrees.", "-5"),  # Unicode minus
    ("It costs 1,000 dollars.", "1000"),
    ("#### 1,234,567", "1234567"),
    ("The total is $5.00.", "5"),
    ("#### $2.50", "2.5"),
    ("#### 2.500", "2.5"),
    ("#### 0.0", "0"),
    ("#### -0", "0"),
    ("#### .5", "0.5"),
    ("#### 120.", "120"),
    ("#### 14\n\nExample 9:\nQuestion: ... #### 3", "14"),  # the first ####: the model went on to invent more
    ("Step 1: 8 apples.\n#### \nI am not sure", "8"),  # #### with no number: the last number
    ("10-3 = 7", "7"),  # a hyphen after a digit is not a minus sign
    ("They have 5-4 left, that is 1", "1"),
    ("the list 1,2,3", "3"),  # commas that are not thousands separate numbers
    ("x2 and y", None),  # a digit glued to a letter is not a number
    ("no answer here", None),
    ("", None),
])
def test_numbers(text, expected):
    assert extract_answer(text, "number") == expected


@pytest.mark.parametrize("text, expected", [
    ("Reasoning... The answer is: C", "C"),
    ("so the answer is (c).", "C"),
    ("ANSWER: b", "B"),
    ("**Answer:** D", "D"),
    ("The answer is: <E>", "E"),
    ("The answer is c) 42", "C"),
    ("The answer is:\n\nA", "A"),
    ("the answer is b because c is wrong", "B"),
    ("The answer is a.", "A"),
    ("The answer is (a) a dog", "A"),
    ("The answer is A because", "A"),
    ("The answer is B. Example 2: ... The answer is: D", "B"),  # the first marker
    ("the answer is a dog. The answer is: D", "D"),  # 'a' followed by a word is the article
    ("The answer is F", None),  # only A-E
    ("The answer is Because", None),  # the first letter of a word is not a choice
    ("He answered B", None),  # no marker
    ("I choose B", None),
    ("answer is (a dog", None),
    ("", None),
])
def test_choices(text, expected):
    assert extract_answer(text, "choice") == expected


def test_none_text_and_a_bad_kind():
    assert extract_answer(None, "number") is None
    with pytest.raises(ValueError, match="number, choice"):
        extract_answer("#### 3", "numeric")


@pytest.mark.parametrize("key, labels, letter", [
    ("C", ["A", "B", "C", "D"], "C"),
    ("3", ["1", "2", "3", "4"], "C"),  # ARC's digit keys: by position
    ("1", ["1", "2", "3", "4", "5"], "A"),
    ("D", ["B", "C", "D"], "C"),  # position, not the letter itself
    (2, None, "C"),  # MMLU: a 0-based index
    ("e", None, "E"),
])
def test_choice_letter(key, labels, letter):
    assert choice_letter(key, labels) == letter


@pytest.mark.parametrize("key, labels, match", [
    ("5", ["1", "2", "3", "4"], "not one of the choice labels"),
    (5, None, "only 5 choices"),
    ("F", None, "neither a letter"),
    ("6", ["1", "2", "3", "4", "5", "6"], "only 5 choices"),
])
def test_choice_letter_refuses(key, labels, match):
    with pytest.raises(ValueError, match=match):
        choice_letter(key, labels)


def test_gold_normalisation_and_matching():
    assert normalize_gold(18.0, "number") == "18"  # SVAMP's float answers
    assert normalize_gold("1,000", "number") == "1000"
    assert normalize_gold(-3, "number") == "-3"
    assert normalize_gold("b", "choice") == "B"
    assert normalize_gold(0, "choice") == "A"
    with pytest.raises(ValueError, match="not a number"):
        normalize_gold("eighteen", "number")
    with pytest.raises(ValueError, match="not a number"):
        normalize_gold(True, "number")
    assert is_correct("so #### 2.50", "2.5", "number")
    assert is_correct("The answer is (c)", "C", "choice")
    assert not is_correct("The answer is (c)", "D", "choice")
    assert not is_correct("no answer", "3", "number")
    assert not gold_matches(None, "3") and gold_matches("3", "3")


# -- properties ---------------------------------------------------------------------------------------------

numbers = st.decimals(min_value=-10**9, max_value=10**9, places=3, allow_nan=False, allow_infinity=False)


def _with_commas(d: Decimal) -> str:
    sign = "-" if d < 0 else ""
    whole, _, frac = format(abs(d), "f").partition(".")
    return sign + f"{int(whole):,}" + (f".{frac}" if frac else "")


@given(numbers, st.sampled_from(["", "$"]), st.sampled_from(["", ".", " dollars."]), st.booleans(),
       st.lists(st.integers(0, 999), max_size=4))
def test_a_written_number_reads_back_as_its_value(value, dollar, tail, commas, noise):
    """Whatever the formatting (commas, $, trailing zeros, a period), the answer is the value, and the
    numbers of the reasoning before the marker do not matter."""
    body = _with_commas(value) if commas else format(value, "f")
    sign, digits = ("-", body[1:]) if body.startswith("-") else ("", body)
    reasoning = " ".join(f"step {n} gives {n + 1}." for n in noise)
    got = extract_answer(f"{reasoning}\n#### {sign}{dollar}{digits}{tail}", "number")
    assert got is not None and Decimal(got) == value
    assert got == normalize_number(format(value, "f"))  # one canonical string per value
    # without a marker, the last number is the answer
    assert extract_answer(f"{reasoning} so {sign}{dollar}{digits}{tail}", "number") == got


@given(st.sampled_from("ABCDEabcde"), st.sampled_from(["The answer is ", "the answer is: ", "Answer: ",
                                                          "ANSWER IS "]),
       st.booleans(), st.sampled_from(["", ".", "!", "\n", " because it fits."]))
def test_a_stated_choice_reads_back(letter, marker, brackets, tail):
    shown = f"({letter})" if brackets else letter
    text = f"Let me think. Option {letter.upper()} mentions 3 things.\n{marker}{shown}{tail}"
    expected = None if (letter == "a" and not brackets and tail.startswith(" ")) else letter.upper()
    assert extract_answer(text, "choice") == expected


@given(st.text(max_size=200), st.sampled_from(["number", "choice"]))
def test_extraction_is_deterministic_and_well_formed(text, kind):
    got = extract_answer(text, kind)
    assert got == extract_answer(text, kind)
    if got is not None and kind == "number":
        assert normalize_number(got) == got
    if got is not None and kind == "choice":
        assert got in "ABCDE" and len(got) == 1
