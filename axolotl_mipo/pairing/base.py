"""The pairing-strategy interface.

A strategy decides, for each input row, which two generations become the
chosen and the rejected response of a DPO pair. It works in two phases so that
the dataset builder can batch generation across rows and strategies and
validate everything before the first token is generated:

1. ``validate(examples)`` raises :class:`~axolotl_mipo.errors.MIPOStrategyError`
   (or :class:`~axolotl_mipo.errors.MIPODataError` naming the row) when the rows
   cannot support the strategy, e.g. fewer than two distinct contexts. The base
   class checks what the class attributes declare (``needs_context``,
   ``required_fields``, ``min_distinct_contexts``, ``min_distinct_prompts``;
   the config checks ``needs_context`` and ``prompt_only`` against each
   dataset's format, :func:`~axolotl_mipo.pairing.mixing.check_dataset_formats`), so
   a strategy that only declares its needs gets these checks for free; one that
   overrides ``validate`` should call ``super().validate(examples)``.
2. ``requests(examples, seed)`` lists the generations it needs. A
   :class:`GenRequest` names a row (its messages) and the context to generate
   with (``None`` = no context). The builder generates each distinct request
   once, even when several strategies ask for it.
3. ``pair(examples, responses, seed)`` turns the generated responses into
   :class:`Pair` objects. It must be deterministic given ``seed`` and must
   call ``requests`` lookups only for requests it listed in step 2.

Rows are addressed by their *position* in ``examples`` (``Example.index`` is
the row number in the user's file, kept for messages). ``Pair.meta`` is free
provenance (the ``mipo_meta`` column); values under keys ending in ``_row`` must
be row positions, and the key ``strategy`` is reserved for the name of the
strategy that made the pair (a mixture sets it; the builder writes it to
``mipo_strategy``). CONTRIBUTING.md walks through writing a strategy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPODataError, MIPOStrategyError


@dataclass(frozen=True, order=True, slots=True)  # millions per run: no per-instance __dict__
class GenRequest:
    """Generate a response to row ``row``'s messages, with ``context`` as the user context (``None``: none).

    ``query``, when set, replaces the text of the row's last user message (``partial_prompt`` asks for an
    answer to the question with one sentence removed); ``None`` keeps the row's own messages.
    """

    row: int
    context: str | None = None
    query: str | None = None


def request_messages(example: Example, request: GenRequest) -> tuple[tuple[str, str], ...]:
    """The conversation ``request`` asks the model to continue: ``example.messages`` with its last user
    message replaced by ``request.query`` when that is set."""
    if request.query is None:
        return example.messages
    msgs = list(example.messages)
    last = max(i for i, (role, _) in enumerate(msgs) if role == "user")
    msgs[last] = ("user", request.query)
    return tuple(msgs)


@dataclass(slots=True)
class Pair:
    """One DPO pair, stored under row ``row``'s prompt with ``prompt_context`` as its context.

    ``prompt_context`` is the context the training prompt carries: for the
    personalization strategies it is the row's own context (MIPO, arXiv 2603.19294,
    stores both responses under the context-augmented prompt); for the reasoning
    variant it is ``None``.
    """

    row: int
    prompt_context: str | None
    chosen: GenRequest
    rejected: GenRequest
    meta: dict[str, Any] = field(default_factory=dict)


class PairingStrategy(ABC):
    """Base class of every pairing strategy.

    Subclasses set the class attributes below so that the builder can check the
    input before generating, and implement :meth:`requests` and :meth:`pair`.
    Options from the YAML's ``mipo.strategy_kwargs`` arrive as keyword
    arguments of ``__init__``.
    """

    #: registry name, as written in the YAML (``mipo.strategy``)
    name: ClassVar[str] = ""
    #: every row must carry a non-empty user context (the same as listing ``"context"`` in required_fields)
    needs_context: ClassVar[bool] = True
    #: the strategy pairs prompts alone and drops any user context (MIPO's reasoning variant): the config
    #: accepts it only on datasets whose rows have no context (``format: prompt``), where nothing is dropped
    prompt_only: ClassVar[bool] = False
    #: fields every row must carry, non-empty, checked by :meth:`validate` before any generation:
    #: ``"context"`` is :attr:`Example.context`, ``"messages"`` the conversation, any other name a key of
    #: :attr:`Example.meta` (e.g. ``"reference"``, filled from ``mipo.datasets[].reference_field``)
    required_fields: ClassVar[tuple[str, ...]] = ()
    #: the strategy needs at least this many distinct contexts among the rows
    min_distinct_contexts: ClassVar[int] = 1
    #: the strategy needs at least this many distinct prompts (queries) among the rows
    min_distinct_prompts: ClassVar[int] = 1
    #: how many generations the strategy asks for per row (documentation and progress estimates)
    generations_per_row: ClassVar[int] = 2

    @classmethod
    def needs_user_context(cls) -> bool:
        """Whether every row must carry a user context (:attr:`needs_context`, or ``"context"`` required)."""
        return bool(cls.needs_context or "context" in cls.required_fields)

    def __init__(self, **options: Any) -> None:
        if options:
            raise MIPOStrategyError(
                f"pairing strategy {self.name!r} takes no options, got {sorted(options)}; "
                "remove them from mipo.strategy_kwargs"
            )

    # -- phase 1 -------------------------------------------------------------
    def validate(self, examples: Sequence[Example]) -> None:
        """Raise a documented error if ``examples`` cannot support this strategy."""
        if not examples:
            raise MIPOStrategyError(f"pairing strategy {self.name!r} got a dataset of zero rows; check mipo.datasets")
        if self.needs_context:
            for ex in examples:
                if ex.context is None or not ex.context.strip():
                    raise MIPODataError(
                        f"pairing strategy {self.name!r} needs a user context in every row, this one has none; "
                        "set the context field (mipo.datasets[].context_field) or use strategy mismatched_prompt",
                        row=ex.index,
                        field="context",
                        source=ex.source or None,
                    )
        self._check_required_fields(examples)
        if self.min_distinct_contexts > 1:
            n = len({ex.context for ex in examples})
            if n < self.min_distinct_contexts:
                raise MIPOStrategyError(
                    f"pairing strategy {self.name!r} needs at least {self.min_distinct_contexts} distinct user "
                    f"contexts, the data has {n}; add rows from other users or use strategy drop_context"
                )
        if self.min_distinct_prompts > 1:
            n = len({ex.query_key for ex in examples})
            if n < self.min_distinct_prompts:
                raise MIPOStrategyError(
                    f"pairing strategy {self.name!r} needs at least {self.min_distinct_prompts} distinct prompts, "
                    f"the data has {n}; add rows with other prompts"
                )

    def _check_required_fields(self, examples: Sequence[Example]) -> None:
        """Refuse, naming the row and the field, a row without one of :attr:`required_fields`."""
        for name in self.required_fields:
            if name == "context" and self.needs_context:
                continue  # already checked with the more specific message above
            for ex in examples:
                if name == "context":
                    value: Any = ex.context
                elif name == "messages":
                    value = ex.messages
                else:
                    value = ex.meta.get(name)
                if value is None or (isinstance(value, str) and not value.strip()) or (
                        isinstance(value, (tuple, list, dict)) and not value):
                    raise MIPODataError(
                        f"pairing strategy {self.name!r} needs the field {name!r} in every row, this one has "
                        "none; add it to the data (see the strategy's documentation) or choose another strategy",
                        row=ex.index,
                        field=name,
                        source=ex.source or None,
                    )

    # -- phase 2 -------------------------------------------------------------
    @abstractmethod
    def requests(self, examples: Sequence[Example], seed: int) -> list[GenRequest]:
        """The generations this strategy needs, in a deterministic order."""

    # -- phase 3 -------------------------------------------------------------
    @abstractmethod
    def pair(self, examples: Sequence[Example], responses: Mapping[GenRequest, str], seed: int) -> list[Pair]:
        """Build the pairs from the generated responses (deterministic given ``seed``)."""
