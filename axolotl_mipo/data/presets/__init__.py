"""``format:`` presets for public personalization datasets, read as published.

Each preset maps one dataset family's schema to an :class:`~axolotl_mipo.data.example.Example`: the user
context, the query, and where the dataset has them the reference output (``meta["reference"]``), the
user's own human preference pair (``meta["human_chosen"]`` / ``meta["human_rejected"]``) and a user id
(``meta["user_id"]``). Field names follow the dataset cards cited in each preset's docstring; fixtures in
the tests are written by hand in that shape. Rows are read as a stream (:mod:`.readers`), and a row that
lacks a field its preset needs is a :class:`~axolotl_mipo.errors.MIPODataError` naming the file, the row
and the field (``on_bad_row: skip`` counts and drops it).

One module per dataset family (:mod:`.alignx`, :mod:`.community_alignment`, :mod:`.lamp`, :mod:`.prism`, and
:mod:`.reasoning` for the benchmarks ``gsm8k``, ``svamp``, ``arc`` and ``mmlu``, whose rows have no user context
and keep a gold answer for evaluation only); :mod:`.readers` holds what they share and :mod:`.base` what a
preset declares (``Preset.context`` says whether its rows carry a user context).

Adding a family is one file: ``axolotl_mipo/data/presets/<family>.py`` defining ``PRESET``, a
:class:`Preset` (or ``PRESETS``, a tuple of them, for a family of several formats) with its name (the
``format:`` value), its ``split`` (one row -> Example), optionally its ``read`` (default: :func:`iter_source`)
and its ``options``: the ``mipo.datasets[]`` keys it accepts, each a :class:`PresetOption` with its default
and check. The registry below finds the module; ``mipo.datasets[].format`` accepts the name and the config
refuses, naming the key and the preset, any preset option the preset does not declare. A dataset key that
no preset has yet is a field of ``MIPODatasetConfig`` in ``axolotl_mipo/args.py``. Tests go in
``tests/data/presets/test_<family>.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

from axolotl_mipo.data.example import Example
from axolotl_mipo.data.presets.alignx import ALIGNX_COLUMNS, ALIGNX_PARTS
from axolotl_mipo.data.presets.base import Preset, PresetOption
from axolotl_mipo.data.presets.prism import PRISM_DEFAULT_PARTS
from axolotl_mipo.data.presets.readers import iter_source
from axolotl_mipo.errors import MIPODataError

__all__ = ["ALIGNX_COLUMNS", "ALIGNX_PARTS", "PRESETS", "PRESET_NAMES", "PRISM_DEFAULT_PARTS", "Preset",
           "PresetOption", "get_preset", "iter_preset_rows", "iter_source", "preset_option_keys"]

_NOT_FAMILIES = frozenset({"base", "readers"})


def _discover() -> dict[str, Preset]:
    """Every family module's ``PRESET`` (or ``PRESETS``), by module name; a name taken twice is refused."""
    found: dict[str, Preset] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _NOT_FAMILIES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        presets = getattr(module, "PRESETS", None) or (getattr(module, "PRESET", None),)
        for preset in presets:
            if not isinstance(preset, Preset):
                raise TypeError(f"{module.__name__} must define PRESET, a Preset (or PRESETS, a tuple of them)")
            if preset.name in found:
                raise TypeError(f"preset name {preset.name!r} of {module.__name__} is already taken")
            found[preset.name] = preset
    return found


PRESETS: dict[str, Preset] = _discover()
#: every preset name, for ``mipo.datasets[].format``
PRESET_NAMES = tuple(PRESETS)


def preset_option_keys() -> dict[str, tuple[str, ...]]:
    """``{mipo.datasets[] key: the presets that accept it}``, for every key some preset declares."""
    out: dict[str, list[str]] = {}
    for preset in PRESETS.values():
        for key in preset.options:
            out.setdefault(key, []).append(preset.name)
    return {k: tuple(v) for k, v in out.items()}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, PRESETS, n=1)
        raise MIPODataError(f"unknown format {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                            + f" (presets: {', '.join(PRESETS)})")
    return PRESETS[name]


def iter_preset_rows(ds_cfg) -> tuple[Iterator[tuple[int, Any]], str, Callable[..., Example]]:
    """``(numbered rows, source, split function)`` of one preset dataset, streamed."""
    preset = get_preset(ds_cfg.format)
    rows, source = preset.read(ds_cfg)
    return enumerate(rows), source, preset.splitter(ds_cfg)
