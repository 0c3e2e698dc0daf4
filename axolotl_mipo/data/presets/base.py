"""What a dataset preset declares: how to read its rows, how to split one, and the options it accepts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from axolotl_mipo.data.example import Example
from axolotl_mipo.data.presets.readers import iter_source

__all__ = ["Preset", "PresetOption", "named_parts"]


@dataclass(frozen=True)
class PresetOption:
    """One ``mipo.datasets[]`` key a preset accepts.

    ``default`` is what the preset uses when the key is unset (the preset's code reads it from here);
    ``check`` returns why a value is refused (the config error then names the key), or ``None``.
    """

    default: Any = None
    check: Callable[[Any], str | None] | None = None

    def problem(self, value: Any) -> str | None:
        return self.check(value) if self.check is not None else None


def named_parts(preset: str, allowed: tuple[str, ...] | None = None) -> Callable[[Any], str | None]:
    """The check of a ``context_parts`` option: at least one part, each one of ``allowed`` (when given)."""

    def check(parts: list[str]) -> str | None:
        if not parts:
            return "is empty; name at least one part"
        bad = [p for p in parts if allowed is not None and p not in allowed]
        return f"{bad[0]!r} is not an {preset} part; use {', '.join(allowed)}" if bad else None

    return check


@dataclass(frozen=True)
class Preset:
    """One ``format:`` preset: how to read its rows, how to split one row, and which options it accepts.

    ``bind``, when set, gives the split function of one dataset (for what its options name that is read
    once, e.g. LaMP's ``outputs_file``); otherwise every dataset uses ``split``.

    ``context``: whether the preset's rows carry a user context (the personalization datasets) or are plain
    questions (the reasoning benchmarks, ``context=False``). The config derives from it which pairing
    strategies, context builders and losses the dataset can be used with.
    """

    name: str
    split: Callable[..., Example]
    read: Callable[[Any], tuple[Iterable[Any], str]] = iter_source
    options: Mapping[str, PresetOption] = field(default_factory=dict)
    card: str = ""
    license: str = ""
    bind: Callable[[Any], Callable[..., Example]] | None = None
    context: bool = True

    def splitter(self, ds_cfg) -> Callable[..., Example]:
        return self.bind(ds_cfg) if self.bind is not None else self.split
