"""The error types users see.

Every error raised for bad input or bad configuration is a ``MIPOError`` so that
callers (and the fuzz tests) can tell a documented refusal from a bug.
"""

from __future__ import annotations


class MIPOError(ValueError):
    """Base class of every documented axolotl-mipo error."""


class MIPODataError(MIPOError):
    """A row of the input data cannot be used.

    The message names the dataset, the row, the field and the fix.
    """

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None, source: str | None = None):
        where = []
        if source is not None:
            where.append(f"dataset {source!r}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
        self.row = row
        self.field = field
        self.source = source


class MIPOConfigError(MIPOError):
    """The ``mipo:`` block of the YAML is invalid; the message names the key."""


class MIPOStrategyError(MIPOError):
    """A pairing strategy cannot run on the given rows (e.g. too few distinct contexts)."""


class MIPOGenerationError(MIPOError):
    """Generation failed; everything generated before the failure is kept in the cache."""
