"""The unit that flows from the input rows into pairing and generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GOLD_ANSWER_KEY = "gold_answer"
GOLD_KIND_KEY = "gold_kind"
#: evaluation-only ``meta`` keys: the pipeline leaves them out of every DPO row
GOLD_KEYS = (GOLD_ANSWER_KEY, GOLD_KIND_KEY)
QUESTION_KEY = "question"


@dataclass(frozen=True, slots=True)
class Example:
    """One input row after the context/query split.

    ``messages`` is the conversation *without* the user context: for the
    ``context_query`` format it is a single user turn holding the query, for the
    ``messages`` format it is every turn except the one that carried the context,
    for the ``prompt`` format it is the prompt as a user turn. ``context`` is the
    user context text, or ``None`` for the reasoning variant (``prompt`` rows).
    ``index`` is the row's position in the input (used in error messages and
    to make pairing deterministic); ``source`` names the dataset it came from.

    ``meta`` carries what travels with the row but is not part of its identity:
    ``reference`` (a reference output), ``human_chosen`` / ``human_rejected``
    (the user's own preference pair, from the dataset presets) and ``user_id``;
    for reasoning rows ``gold_answer`` / ``gold_kind`` (:data:`GOLD_KEYS`: the
    gold answer and ``"number"`` or ``"choice"``, for evaluation only: never
    rendered into a prompt or written into a training row) and ``question``
    (the question inside a templated prompt, which ``partial_prompt`` shortens).
    They live in ``meta`` so that every place that rebuilds an Example keeps them.
    Slots: a 1.3M-row dataset holds 1.3M of these (no per-instance ``__dict__``).
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

    @property
    def human_pair(self) -> tuple[str, str] | None:
        """The user's own ``(chosen, rejected)`` responses, when the dataset has them."""
        c, r = self.meta.get("human_chosen"), self.meta.get("human_rejected")
        return (c, r) if c is not None and r is not None else None

    @property
    def user_id(self) -> str | None:
        return self.meta.get("user_id")

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


def set_human_pair(meta: dict, chosen: str | None, rejected: str | None) -> None:
    """Keep the user's own pair in ``meta`` when both responses exist and differ (an equal pair ranks nothing);
    the one rule for the generic formats and the dataset presets."""
    if chosen is not None and rejected is not None and chosen.strip() != rejected.strip():
        meta["human_chosen"] = chosen
        meta["human_rejected"] = rejected
