"""The unit that flows from the input rows into pairing and generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One input row after the context/query split.

    ``messages`` is the conversation *without* the user context: for the
    ``context_query`` format it is a single user turn holding the query, for the
    ``messages`` format it is every turn except the one that carried the context,
    for the ``prompt`` format it is the prompt as a user turn. ``context`` is the
    user context text, or ``None`` for the reasoning variant (``prompt`` rows).
    ``index`` is the row's position in the input (used in error messages and
    to make pairing deterministic); ``source`` names the dataset it came from.
    """

    index: int
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    context: str | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def query_key(self) -> str:
        """A stable string for 'is this the same prompt' comparisons."""
        return "\x1e".join(f"{r}\x1f{c}" for r, c in self.messages)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]
