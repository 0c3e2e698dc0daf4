"""Reading row files and cleaning their text: what the generic formats (:mod:`~axolotl_mipo.data.rows`) and the
dataset presets (:mod:`~axolotl_mipo.data.presets`) share.

A JSONL line that cannot be read is kept in row order as a :class:`BadLine`, so that ``on_bad_row: skip``
counts it where it is and ``raise`` names it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from axolotl_mipo.errors import MIPODataError

__all__ = ["CONTROL", "BadLine", "clean_text", "iter_jsonl", "read_json"]

# C0/C1 control characters other than tab and newlines, DEL, and lone surrogates (which
# cannot be encoded as UTF-8 and would break the tokenizer and the cache)
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# CONTROL's character set restricted to ASCII (C1 controls and surrogates are not ASCII)
_ASCII_CONTROL = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


def clean_text(value: str) -> str:
    """Drop control characters and lone surrogates (:data:`CONTROL`); everything else is kept verbatim.

    ASCII text, most of it, goes through ``bytes.translate`` instead of the regex: millions of calls per dataset.
    """
    if value.isascii():
        raw = value.encode("ascii")
        kept = raw.translate(None, _ASCII_CONTROL)
        return value if len(kept) == len(raw) else kept.decode("ascii")
    return CONTROL.sub("", value)


class BadLine:
    """A JSONL line that could not be read, kept in row order so ``on_bad_row: skip`` can count it."""

    def __init__(self, error: MIPODataError):
        self.error = error


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, object)`` per non-blank line; an unreadable line is a :class:`BadLine` naming it."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, BadLine(MIPODataError(
                    f"line {lineno} is not valid UTF-8 ({exc.reason} at byte {exc.start}); re-encode the file as UTF-8",
                    source=str(path),
                ))
                continue
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as exc:
                yield lineno, BadLine(MIPODataError(
                    f"line {lineno} is not valid JSON ({exc.msg} at column {exc.colno}); fix or delete that line",
                    source=str(path),
                ))


def read_json(path: Path) -> list[Any]:
    """The rows of a ``.json`` file: a list, or ``{"data" | "rows" | "train": [...]}``; JSON Lines is accepted."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise MIPODataError(f"file is not valid UTF-8 ({exc.reason}); re-encode it", source=str(path)) from None
    except json.JSONDecodeError:
        # a .json file that is really JSON Lines is common enough to accept
        return [obj for _, obj in iter_jsonl(path)]
    if isinstance(data, dict):
        for key in ("data", "rows", "train"):
            if isinstance(data.get(key), list):
                return data[key]
        raise MIPODataError("a .json file must hold a list of rows (or {'data': [...]})", source=str(path))
    if not isinstance(data, list):
        raise MIPODataError("a .json file must hold a list of rows", source=str(path))
    return data
