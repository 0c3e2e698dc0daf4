"""The ``community_alignment`` preset: Community Alignment (facebook/community-alignment-dataset), an annotator's
demographics and their preferred first-turn response."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from axolotl_mipo.data.example import Example, set_human_pair
from axolotl_mipo.data.presets.base import Preset, PresetOption
from axolotl_mipo.data.presets.readers import iter_source, need_text, one_line, opt_text, preset_example
from axolotl_mipo.errors import MIPODataError


def _no_worst(how: str) -> str | None:
    if how == "worst":
        return ("community_alignment has no per-response scores, so there is no worst response; use random or "
                "first")
    return None


OPTIONS = {
    "max_items": PresetOption(default=0),
    "max_item_chars": PresetOption(),
    "rejected_response": PresetOption(default="random", check=_no_worst),
}

_LETTERS = "abcd"


def _ca_letter(value: Any, *, idx: int, source: str) -> str | None:
    if value is None:
        return None
    m = re.fullmatch(r"(?:response_)?([a-dA-D])", str(value).strip())
    if not m:
        raise MIPODataError(f"must name one of response_a..response_d, got {value!r}", row=idx,
                            field="first_turn_preferred_response", source=source)
    return m.group(1).lower()


def _ca_demographics(row: dict, cut: int | None) -> list[str]:
    return [f"{k.removeprefix('annotator_').replace('_', ' ')}: {one_line(str(v), cut)}"
            for k, v in row.items() if k.startswith("annotator_") and k != "annotator_id"
            and v is not None and str(v).strip()]


def _ca_read(ds_cfg) -> tuple[Iterable[Any], str]:
    """All rows, so the same annotator's choices on other conversations can join each row's context."""
    rows, source = iter_source(ds_cfg)
    if not ds_cfg.max_items:
        return rows, source
    rows = list(rows)
    by_annotator: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if isinstance(r, dict) and r.get("annotator_id") is not None:
            by_annotator[str(r["annotator_id"])].append(i)

    def attach():
        for i, r in enumerate(rows):
            if isinstance(r, dict):
                out = _CARow(r)
                out.others = [rows[j] for j in by_annotator.get(str(r.get("annotator_id")), []) if j != i]
                yield out
            else:
                yield r

    return attach(), source


class _CARow(dict):
    others: list = []


def _ca_history(others: list, n: int, cut: int | None) -> list[str]:
    lines = []
    for o in others:
        if len(lines) >= n:
            break
        prompt = opt_text(o, "first_turn_prompt")
        try:
            letter = _ca_letter(o.get("first_turn_preferred_response"), idx=0, source="")
        except MIPODataError:
            continue  # a bad row elsewhere is reported where it is the row, not here
        preferred = opt_text(o, f"first_turn_response_{letter}") if letter else None
        if prompt and preferred:
            lines.append(f"- to \"{one_line(prompt, cut)}\" they preferred: \"{one_line(preferred, cut)}\"")
    return lines


def _ca_split(row: dict, ds_cfg, idx: int, source: str) -> Example:
    """Community Alignment (facebook/community-alignment-dataset),
    https://huggingface.co/datasets/facebook/community-alignment-dataset (CC-BY-4.0) and
    github.com/facebookresearch/community-alignment-dataset.

    One CSV row per conversation: ``conversation_id``, ``annotator_id``, the ``annotator_*`` demographics
    (``annotator_age``, ``annotator_gender``, ``annotator_education_level``, ``annotator_political``,
    ``annotator_ethnicity``, ``annotator_country``, ...), ``first_turn_prompt``,
    ``first_turn_response_a`` .. ``_d``, ``first_turn_preferred_response`` (``response_a`` ..
    ``response_d``), then the same for later turns. Only the first turn is used. Context: every
    non-empty ``annotator_*`` column but the id, plus (``max_items``, default 0) the same annotator's
    preferred first-turn responses on up to that many of their other conversations, in file order.
    Query: ``first_turn_prompt``. Human pair: the preferred response versus one of the others
    (``rejected_response``: ``random`` (default; seeded by the conversation id) or ``first`` in a..d
    order; the dataset has no scores, so ``worst`` is refused by the config). A row without a preferred
    response (a conversation that stopped) has no pair.
    """
    query = need_text(row, "first_turn_prompt", idx=idx, source=source,
                       what="community_alignment preset (the query)")
    cut = ds_cfg.max_item_chars
    lines = _ca_demographics(row, cut)
    others = getattr(row, "others", [])
    if ds_cfg.max_items and others:
        hist = _ca_history(others, ds_cfg.max_items, cut)
        if hist:
            lines += ["Responses this user preferred in other conversations:", *hist]
    meta: dict[str, Any] = {}
    if row.get("annotator_id") is not None:
        meta["user_id"] = str(row["annotator_id"])
    letter = _ca_letter(row.get("first_turn_preferred_response"), idx=idx, source=source)
    if letter is not None:
        chosen = need_text(row, f"first_turn_response_{letter}", idx=idx, source=source,
                            what="community_alignment preset (the preferred response)")
        rest = [c for c in _LETTERS if c != letter and opt_text(row, f"first_turn_response_{c}")]
        if rest:
            if (ds_cfg.rejected_response or OPTIONS["rejected_response"].default) == "first":
                pick = rest[0]
            else:
                pick = random.Random(str(row.get("conversation_id", idx))).choice(rest)
            set_human_pair(meta, chosen, opt_text(row, f"first_turn_response_{pick}"))
    return preset_example(idx, query, "\n".join(lines), source, meta,
                     what="no annotator_* demographics in the row")


PRESET = Preset("community_alignment", _ca_split, read=_ca_read, options=OPTIONS,
                card="https://huggingface.co/datasets/facebook/community-alignment-dataset", license="CC-BY-4.0")
