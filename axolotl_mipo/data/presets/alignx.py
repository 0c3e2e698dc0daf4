"""The ``alignx`` preset: AlignX (JinaLeejnl/AlignX), a Reddit user's profile and their own preference pair."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from axolotl_mipo.data.example import Example, set_human_pair
from axolotl_mipo.data.files import clean_text
from axolotl_mipo.data.presets.base import Preset, PresetOption, named_parts
from axolotl_mipo.data.presets.readers import iter_source, need_text, one_line, opt_text, preset_example
from axolotl_mipo.errors import MIPODataError

ALIGNX_PARTS = ("demographics", "comments", "pairs")
# what the alignx preset reads; the 90-value direction vectors stay in Arrow
ALIGNX_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "prompt": None, "chosen": None, "rejected": None, "Demographic Information": None,
    "User-Generated Content": ("prompt", "comment"),
    "Pair-wise Comparative Feedback": ("prompt", "chosen", "rejected"),
}


OPTIONS = {
    "context_parts": PresetOption(default=ALIGNX_PARTS, check=named_parts("alignx", ALIGNX_PARTS)),
    "max_items": PresetOption(default=4),
    "max_item_chars": PresetOption(),
}


def _alignx_read(ds_cfg) -> tuple[Iterable[Any], str]:
    return iter_source(ds_cfg, columns=ALIGNX_COLUMNS)


def _alignx_split(row: dict, ds_cfg, idx: int, source: str) -> Example:
    """AlignX (JinaLeejnl/AlignX), https://huggingface.co/datasets/JinaLeejnl/AlignX and its GitHub README
    (github.com/JinaLeejnl/AlignX, "Dataset Format").

    A row: ``prompt``, ``chosen``, ``rejected``, ``Preference Direction`` (90 values of 0/0.5/1),
    ``Demographic Information`` (text), ``User-Generated Content`` (a list of ``{prompt, comment,
    Preference Direction}``) and ``Pair-wise Comparative Feedback`` (a list of ``{prompt, chosen,
    rejected, ...}``). Context: the parts named in ``context_parts`` (default all three), each list cut
    to ``max_items`` (default 4) entries, each text to ``max_item_chars``. Query: ``prompt``. Human
    pair: ``chosen`` / ``rejected``. The 90-value direction vectors are not rendered: the card names
    the dimensions only in the paper, and a list of 90 numbers is not a profile a model can read.
    A part that is absent, null or empty in a row is left out (the Reddit rows carry all three, the
    rows from the general alignment sets may not); a row whose chosen parts are all empty is an error.
    """
    query = need_text(row, "prompt", idx=idx, source=source, what="alignx preset (the query)")
    chosen = need_text(row, "chosen", idx=idx, source=source, what="alignx preset (the human pair)")
    rejected = need_text(row, "rejected", idx=idx, source=source, what="alignx preset (the human pair)")
    parts = ds_cfg.context_parts or list(OPTIONS["context_parts"].default)
    n = OPTIONS["max_items"].default if ds_cfg.max_items is None else ds_cfg.max_items
    cut = ds_cfg.max_item_chars
    lines: list[str] = []
    if "demographics" in parts:
        demo = opt_text(row, "Demographic Information", clean=False)
        if demo:
            lines.append("About the user: " + one_line(demo, cut))
    if "comments" in parts and n:
        ugc = row.get("User-Generated Content") or []
        if not isinstance(ugc, list):
            raise MIPODataError("must be a list of {prompt, comment, ...}", row=idx,
                                field="User-Generated Content", source=source)
        items = [(opt_text(u, "prompt", False), opt_text(u, "comment", False)) for u in ugc[:n]
                 if isinstance(u, dict)]
        items = [(p, c) for p, c in items if c]
        if items:
            lines.append("Comments the user wrote:")
            lines += [f"- on \"{one_line(p, cut)}\": {one_line(c, cut)}" if p else f"- {one_line(c, cut)}"
                      for p, c in items]
    if "pairs" in parts and n:
        pcf = row.get("Pair-wise Comparative Feedback") or []
        if not isinstance(pcf, list):
            raise MIPODataError("must be a list of {prompt, chosen, rejected, ...}", row=idx,
                                field="Pair-wise Comparative Feedback", source=source)
        items = [(opt_text(p, "prompt", False), opt_text(p, "chosen", False), opt_text(p, "rejected", False))
                 for p in pcf[:n] if isinstance(p, dict)]
        items = [t for t in items if t[1] and t[2]]
        if items:
            lines.append("Responses the user preferred:")
            lines += [(f"- to \"{one_line(p, cut)}\": " if p else "- ")
                      + f"preferred \"{one_line(c, cut)}\" over \"{one_line(r, cut)}\"" for p, c, r in items]
    meta: dict[str, Any] = {}
    set_human_pair(meta, chosen, rejected)
    # control characters are removed once from the whole rendered context (the same as per item)
    return preset_example(idx, query, clean_text("\n".join(lines)), source, meta, what=f"parts {parts}")


PRESET = Preset("alignx", _alignx_split, read=_alignx_read, options=OPTIONS,
                card="https://huggingface.co/datasets/JinaLeejnl/AlignX", license="see the card")
