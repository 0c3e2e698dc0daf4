"""The ``lamp`` preset: LaMP and LongLaMP, a user's profile items and the reference output of their question."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from axolotl_mipo.data.example import Example
from axolotl_mipo.data.files import clean_text
from axolotl_mipo.data.presets.base import Preset, PresetOption
from axolotl_mipo.data.presets.readers import as_text, need_list, need_text, one_line, opt_text, preset_example
from axolotl_mipo.errors import MIPODataError

#: ``max_items``: 8 profile items when unset; an explicit ``null`` keeps them all
OPTIONS = {
    "max_items": PresetOption(default=8),
    "item_order": PresetOption(default="first"),
    "max_item_chars": PresetOption(),
    "outputs_file": PresetOption(),
}

_DATE = re.compile(r"(\d{4})(?:[-/.](\d{1,2}))?(?:[-/.](\d{1,2}))?")
_ID_KEYS = frozenset({"id", "pid", "uid"})
# LongLaMP names the user differently per task; LaMP has no user id (one question is one user)
_USER_KEYS = ("user_id", "reviewerId", "author", "name")


def _date_key(item: dict) -> tuple[int, int, int] | None:
    value = item.get("date")
    if value is None:
        return None
    m = _DATE.search(str(value))
    if not m:
        return None
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


def _select_items(items: list, order: str, n: int | None) -> list:
    """``n`` profile items by ``item_order``; by date, undated items come after every dated one."""
    if order in ("newest", "oldest"):
        keys = list(map(_date_key, items))
        dated = [i for i, k in enumerate(keys) if k is not None]
        # a stable sort keeps file order among equal dates (reverse=True keeps it too)
        dated.sort(key=lambda i: keys[i], reverse=order == "newest")
        chosen = [items[i] for i in dated] + [items[i] for i, k in enumerate(keys) if k is None]
    elif order == "last":
        chosen = list(reversed(items))
    else:
        chosen = list(items)
    return chosen if n is None else chosen[:n]


def _render_item(item: dict, cut: int | None) -> str | None:
    fields = []
    for key, value in item.items():
        if key in _ID_KEYS:
            continue
        text = as_text(value)
        if text is not None:
            fields.append(f"{key}: {one_line(text, cut)}")
    return "; ".join(fields) or None


def _lamp_outputs(ds_cfg) -> dict[str, str]:
    """The LaMP outputs file ``{"task", "golds": [{"id", "output"}]}`` as ``{id: output}``."""
    path = Path(ds_cfg.outputs_file).expanduser()
    if not path.exists():
        raise MIPODataError("outputs_file not found; check mipo.datasets[].outputs_file", source=str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MIPODataError(f"outputs_file is not valid JSON ({exc})", source=str(path)) from None
    golds = data.get("golds") if isinstance(data, dict) else data
    if not isinstance(golds, list):
        raise MIPODataError("outputs_file must hold {\"task\", \"golds\": [{\"id\", \"output\"}]}",
                            field="golds", source=str(path))
    out: dict[str, str] = {}
    for i, g in enumerate(golds):
        if not isinstance(g, dict) or "id" not in g or not isinstance(g.get("output"), str):
            raise MIPODataError("each gold must be {\"id\", \"output\": text}", row=i, field="golds",
                                source=str(path))
        out[str(g["id"])] = g["output"]
    return out


def _lamp_split(row: dict, ds_cfg, idx: int, source: str, outputs: dict[str, str] | None = None) -> Example:
    """LaMP (https://lamp-benchmark.github.io, github.com/LaMP-Benchmark/LaMP) and LongLaMP
    (https://huggingface.co/datasets/LongLaMP/LongLaMP, https://longlamp-benchmark.github.io).

    A question row: ``{id, input, profile: [items]}``; the reference is the row's ``output`` when it has
    one (LongLaMP, later LaMP releases) or the ``output`` of the same ``id`` in the separate outputs file
    (``outputs_file``: ``{"task", "golds": [{"id", "output"}]}``, the original LaMP release).
    Profile item keys vary per task (``text``, ``title``, ``abstract``, ``reviewText``, ``summary``,
    ``overall``, ``date``, ...): every scalar field of an item is rendered as ``key: value`` except its
    ``id``, so no task is hard-coded. ``max_items`` (default 8; ``null`` for all) items are kept, picked
    by ``item_order``: ``first`` / ``last`` in file order, or ``newest`` / ``oldest`` by the item's
    ``date`` (undated items after every dated one). Context: the profile; query: ``input``;
    reference: ``output``. The user id is ``user_id``, ``reviewerId``, ``author`` or ``name``, the
    first one present (LongLaMP's tasks name it differently).
    """
    query = need_text(row, "input", idx=idx, source=source, what="lamp preset (the query)")
    profile = need_list(row, "profile", idx=idx, source=source, what="lamp preset (the user context)")
    n = ds_cfg.max_items
    if n is None and "max_items" not in ds_cfg.model_fields_set:
        n = OPTIONS["max_items"].default
    items = _select_items([p for p in profile if isinstance(p, dict)],
                          ds_cfg.item_order or OPTIONS["item_order"].default, n)
    rendered = [r for r in (_render_item(it, ds_cfg.max_item_chars) for it in items) if r]
    context = "\n".join(f"- {r}" for r in rendered)
    if rendered:
        context = "The user's earlier items:\n" + context
    meta: dict[str, Any] = {}
    reference = opt_text(row, "output")
    if reference is None and outputs is not None:
        if "id" not in row:
            raise MIPODataError("missing; the outputs_file is matched to questions by id", row=idx, field="id",
                                source=source)
        ref = outputs.get(str(row["id"]))
        if ref is None:
            raise MIPODataError(f"id {row['id']!r} has no gold output in outputs_file {ds_cfg.outputs_file!r}",
                                row=idx, field="id", source=source)
        reference = clean_text(ref)
    if reference is not None:
        meta["reference"] = reference
    for key in _USER_KEYS:
        if row.get(key) is not None:
            meta["user_id"] = str(row[key])
            break
    return preset_example(idx, query, context, source, meta, what="the profile has no text")


def _bind(ds_cfg) -> Callable[..., Example]:
    """The split of one dataset: with ``outputs_file``, its gold outputs are read once and matched by id."""
    if not ds_cfg.outputs_file:
        return _lamp_split
    outputs = _lamp_outputs(ds_cfg)

    def split(row, cfg, idx, src):
        return _lamp_split(row, cfg, idx, src, outputs)

    return split


PRESET = Preset("lamp", _lamp_split, options=OPTIONS, bind=_bind, card="https://lamp-benchmark.github.io",
                license="LaMP: CC BY-NC-SA 4.0 (non-commercial)")
