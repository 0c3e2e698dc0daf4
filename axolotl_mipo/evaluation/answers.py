"""Scoring a generated answer against a gold one, by rule: no model is asked to extract an answer.

:func:`extract_answer` ``(text, kind)`` returns the normalised answer of a
response, or ``None`` when it has none:

``kind="number"`` (GSM8K, SVAMP)
    The first number after a ``####`` marker; when no ``####`` is followed by
    a number, the last number in the text. Thousands commas, a ``$`` sign and
    a trailing period are removed, negative numbers keep their sign (``-`` or
    the Unicode minus), and the value is normalised so that ``2.50``, ``2.5``
    and ``2.500`` are the same answer (``"2.5"``), ``1,000`` is ``"1000"``
    and ``-0`` is ``"0"``. A hyphen between two numbers (``10-3``) is a
    minus sign only when it does not follow a digit or a letter.

``kind="choice"`` (ARC, CommonsenseQA, OpenBookQA, MMLU)
    The letter A-E right after "answer is" or "answer:" (any case, optional
    parentheses or Markdown emphasis, e.g. "The answer is: (c)", "**Answer:** B").
    The letter must stand alone (not the first letter of a word); an
    unbracketed lower-case ``a`` followed by a word is the article ("the
    answer is a dog"), not a choice.

Why the *first* marker: the authors' scripts (nam630/mutual_information_preference_optimization,
``eval_scripts/gsm.py`` splits on ``####`` and reads the number after the first one, ``arc.py``
splits once on "the answer is"); a sampled continuation often goes on to invent further
exemplars with their own answers, and the first answer is the one given to the question asked.
Unlike those scripts, no language model is asked to extract a number when ``####`` is missing
(the last number is taken instead), so scoring is deterministic and free.

Answer keys: :func:`choice_letter` maps an answer key to the letter the prompt
shows, by its position among the choice labels (ARC's ``answerKey`` is a
letter or a digit ``"1"``-``"5"``; MMLU's ``answer`` is an index 0-3); it lives
in :mod:`axolotl_mipo.data.answer_keys`, where the reasoning presets use it too.
:func:`normalize_gold` normalises a gold answer once, :func:`is_correct` scores
one response.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from axolotl_mipo.data.answer_keys import CHOICE_LETTERS, choice_letter

__all__ = ["ANSWER_KINDS", "CHOICE_LETTERS", "choice_letter", "extract_answer", "gold_matches", "is_correct",
           "normalize_gold", "normalize_number"]

ANSWER_KINDS = ("number", "choice")

# sign: ASCII hyphen or the Unicode minus, not right after a digit or letter (so "10-3" is 10 and 3)
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-\u2212]\s?)?\$?\s?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
)
_MARK = re.compile(r"####")
_CHOICE = re.compile(
    r"\banswer\s*(?:is\s*:?|:)[\s*_<\[]*(?P<open>\()?\s*(?P<letter>[A-Ea-e])\s*(?P<close>\))?"
    r"(?P<after>\s+\w|(?!\w))",
    re.IGNORECASE,
)


def normalize_number(text: str) -> str | None:
    """The canonical string of one number (``"2.50"`` -> ``"2.5"``, ``"1,000"`` -> ``"1000"``); ``None`` if not one."""
    m = _NUMBER.fullmatch(text.strip().rstrip("."))
    if m is None:
        return None
    return _canonical(m)


def _canonical(m: re.Match) -> str | None:
    digits = m.group("num").replace(",", "")
    try:
        value = Decimal(digits)
    except InvalidOperation:  # pragma: no cover - the pattern only matches decimal literals
        return None
    if m.group("sign"):
        value = -value
    if value == 0:
        return "0"
    # normalize() strips trailing zeros; format "f" keeps 1000 from becoming 1E+3
    return format(value.normalize(), "f")


def _number(text: str) -> str | None:
    for mark in _MARK.finditer(text):
        m = _NUMBER.search(text, mark.end())
        # the number must follow the marker directly (spaces, a "$" or a sign in between), not a later line
        if m is not None and not text[mark.end():m.start()].strip(" \t\r\n*:"):
            return _canonical(m)
    found = list(_NUMBER.finditer(text))
    return _canonical(found[-1]) if found else None


def _choice(text: str) -> str | None:
    for m in _CHOICE.finditer(text):
        letter, bracketed = m.group("letter"), m.group("open") is not None and m.group("close") is not None
        if m.group("open") is not None and m.group("close") is None:
            continue  # "(a dog": not a bracketed letter
        if letter == "a" and not bracketed and m.group("after").strip():
            continue  # "the answer is a dog": the article
        return letter.upper()
    return None


def _check_kind(kind: str) -> None:
    if kind not in ANSWER_KINDS:
        raise ValueError(f"answer kind must be one of {', '.join(ANSWER_KINDS)}, got {kind!r}")


def extract_answer(text: str | None, kind: str) -> str | None:
    """The normalised answer in ``text``, or ``None`` when there is none (see the module docstring).

    >>> extract_answer("3 + 4 = 7 apples, then 7 * 2 = 14.\\n#### 14", "number")
    '14'
    >>> extract_answer("So the answer is (c).", "choice")
    'C'
    """
    _check_kind(kind)
    if not text:
        return None
    return _number(text) if kind == "number" else _choice(text)


def normalize_gold(gold: str | int | float, kind: str) -> str:
    """A gold answer in the form :func:`extract_answer` returns; ``ValueError`` when it is not one answer.

    A number may be given as a number (SVAMP's ``Answer`` is a float: ``18.0`` -> ``"18"``) or a string;
    a choice as a letter A-E (any case) or a 0-based index.
    """
    _check_kind(kind)
    if kind == "number":
        if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
            raise ValueError(f"gold answer {gold!r} is not a number")
        out = normalize_number(str(gold) if not isinstance(gold, float) else repr(gold))
        if out is None:
            raise ValueError(f"gold answer {gold!r} is not a number (e.g. 18, -3, 2.5, 1,000)")
        return out
    return choice_letter(gold)


def gold_matches(predicted: str | None, gold: str) -> bool:
    """Whether an extracted answer equals a normalised gold answer (``None``, no answer, never does)."""
    return predicted is not None and predicted == gold


def is_correct(text: str | None, gold: str | int | float, kind: str) -> bool:
    """Whether ``text`` answers ``gold``: :func:`extract_answer` against :func:`normalize_gold`."""
    return gold_matches(extract_answer(text, kind), normalize_gold(gold, kind))
