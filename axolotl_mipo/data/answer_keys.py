"""Which letter the prompt shows for a multiple-choice answer key.

Here, in the data layer, because the reasoning presets (:mod:`axolotl_mipo.data.presets.reasoning`) map each
row's key to a letter when they read it and scoring (:mod:`axolotl_mipo.evaluation.answers`, which re-exports
these names) maps a gold key the same way: one rule for both.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CHOICE_LETTERS", "choice_letter"]

CHOICE_LETTERS = "ABCDE"


def choice_letter(answer_key: str | int, labels: Sequence[str] | None = None) -> str:
    """The letter (A-E) the prompt shows for ``answer_key``: its position among ``labels``.

    ``labels`` are the choice labels in order (ARC's ``choices.label``, e.g.
    ``["A", "B", "C", "D"]`` or ``["1", "2", "3", "4"]``); without them an int
    key is a 0-based index (MMLU's ``answer``) and a letter key is itself.
    Raises ``ValueError`` naming the key and the labels when the key is not
    one of them, or the position is past E.
    """
    if labels is not None:
        labels = [str(label).strip() for label in labels]
        key = str(answer_key).strip()
        if key not in labels:
            raise ValueError(f"answer key {answer_key!r} is not one of the choice labels {labels}; fix the row's "
                             "answer key or its labels")
        pos = labels.index(key)
    elif isinstance(answer_key, int) and not isinstance(answer_key, bool):
        pos = answer_key
    elif isinstance(answer_key, str) and answer_key.strip().upper() in CHOICE_LETTERS and answer_key.strip():
        pos = CHOICE_LETTERS.index(answer_key.strip().upper())
    else:
        raise ValueError(f"answer key {answer_key!r} is neither a letter A-E nor a 0-based index; pass the choice "
                         "labels to map it by position")
    if not 0 <= pos < len(CHOICE_LETTERS):
        raise ValueError(f"answer key {answer_key!r} is choice number {pos + 1}; only {len(CHOICE_LETTERS)} choices "
                         f"(A-E) can be scored")
    return CHOICE_LETTERS[pos]
