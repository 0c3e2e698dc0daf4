"""The ``prism`` preset: PRISM (HannahRoseKirk/prism-alignment), a user's survey and their scored first turn."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from axolotl_mipo.data.example import Example, set_human_pair
from axolotl_mipo.data.files import clean_text
from axolotl_mipo.data.presets.base import Preset, PresetOption, named_parts
from axolotl_mipo.data.presets.readers import (
    as_text,
    hub_like,
    iter_jsonl_rows,
    load_hub,
    need_list,
    need_text,
    one_line,
    preset_example,
)
from axolotl_mipo.errors import MIPODataError

PRISM_DEFAULT_PARTS = ("self_description", "system_string", "stated_prefs")
OPTIONS = {
    # any survey field can be a part; a row whose survey lacks one names it
    "context_parts": PresetOption(default=PRISM_DEFAULT_PARTS, check=named_parts("prism")),
    "max_item_chars": PresetOption(),
    "rejected_response": PresetOption(default="worst"),
    # the hub configs to read; their defaults ("survey", "conversations") are the dataset fields' own
    "survey_config": PresetOption(),
    "conversations_config": PresetOption(),
}


def _prism_pair(history: list, how: str, seed_key: str) -> tuple[str, str] | None:
    """Best- vs worst-scored first-turn model responses; ``None`` when they cannot be told apart."""
    first = [h for h in history if isinstance(h, dict) and h.get("role") == "model" and h.get("turn", 0) == 0
             and isinstance(h.get("content"), str) and isinstance(h.get("score"), (int, float))]
    if len(first) < 2:
        return None
    # a tie at the top goes to the response the user continued with (if_chosen), then to the lower within_turn_id
    ranked = sorted(first, key=lambda h: (-h["score"], not h.get("if_chosen", False), h.get("within_turn_id", 0)))
    best = ranked[0]
    others = [h for h in ranked[1:] if h["score"] < best["score"]]
    if not others:
        return None
    if how == "random":
        worst = random.Random(seed_key).choice(others)
    elif how == "first":
        worst = min(others, key=lambda h: h.get("within_turn_id", 0))
    else:
        worst = min(others, key=lambda h: (h["score"], h.get("within_turn_id", 0)))
    return best["content"], worst["content"]


def _prism_context(survey: dict, parts: list[str], cut: int | None, *, idx: int, source: str) -> str:
    lines = []
    for key in parts:
        if key not in survey:
            raise MIPODataError(f"the survey row of this conversation's user has no field {key!r}; check "
                                "mipo.datasets[].context_parts", row=idx, field=key, source=source)
        text = as_text(survey[key])
        if text is not None:
            lines.append(f"{key.replace('_', ' ')}: {one_line(text, cut)}")
    return "\n".join(lines)


class _PrismRow(dict):
    """A conversations row with its user's survey row attached (the join is done while reading)."""

    survey: dict | None = None


def _prism_read(ds_cfg) -> tuple[Iterable[Any], str]:
    """Join ``conversations`` to ``survey`` by ``user_id``; the survey (1,500 users) is held in memory."""
    path = Path(ds_cfg.path).expanduser()
    if path.is_dir() and not hub_like(path):
        files = {"survey": path / "survey.jsonl", "conversations": path / "conversations.jsonl"}
        for name, f in files.items():
            if not f.exists():
                raise MIPODataError(f"a prism folder needs {f.name} (the {name!r} config of the hub repository)",
                                    source=str(path))
        survey_rows: Iterable[Any] = iter_jsonl_rows(files["survey"])
        conversations: Iterable[Any] = iter_jsonl_rows(files["conversations"])
        source = str(files["conversations"])
    else:
        where = str(path) if path.is_dir() else ds_cfg.path
        survey_rows = load_hub(where, ds_cfg.survey_config, ds_cfg.split)
        conversations = load_hub(where, ds_cfg.conversations_config, ds_cfg.split)
        source = f"{ds_cfg.path} ({ds_cfg.conversations_config})"
    users: dict[str, dict] = {}
    for s in survey_rows:
        if isinstance(s, dict) and s.get("user_id") is not None:
            users[str(s["user_id"])] = s

    def rows():
        for c in conversations:
            if isinstance(c, dict):
                out = _PrismRow(c)
                out.survey = users.get(str(c.get("user_id")))
                yield out
            else:
                yield c

    return rows(), source


def _prism_split(row: dict, ds_cfg, idx: int, source: str) -> Example:
    """PRISM (HannahRoseKirk/prism-alignment), https://huggingface.co/datasets/HannahRoseKirk/prism-alignment
    and github.com/HannahKirk/prism-alignment.

    The hub repository's configs are files: ``survey`` = survey.jsonl (one row per user: ``user_id``,
    demographics such as ``age``, ``gender``, ``location``, and ``self_description``, ``system_string``,
    ``stated_prefs``, ...), ``conversations`` = conversations.jsonl (``conversation_id``, ``user_id``,
    ``opening_prompt``, ``conversation_history``: items ``{turn, role ('user'|'model'), content,
    model_name, score, if_chosen, within_turn_id}``). Rows are conversations joined to the survey by
    ``user_id``. Context: the survey fields in ``context_parts`` (default ``self_description``,
    ``system_string``, ``stated_prefs``; dicts are flattened to ``key=value``). Query:
    ``opening_prompt``. Human pair: the best- versus the worst-scored model response of the first turn
    (``rejected_response``: ``worst`` (default), ``random`` among the lower-scored, ``first`` by
    ``within_turn_id``); a tie at the top goes to the response the user continued with
    (``if_chosen``); when every first-turn response has the same score the row has no pair.
    """
    query = need_text(row, "opening_prompt", idx=idx, source=source, what="prism preset (the query)")
    if row.get("user_id") is None:
        raise MIPODataError("missing; conversations are joined to the survey by user_id", row=idx,
                            field="user_id", source=source)
    survey = getattr(row, "survey", None)
    if survey is None:
        raise MIPODataError(f"user_id {row['user_id']!r} has no row in the survey; check that survey and "
                            "conversations come from the same release", row=idx, field="user_id", source=source)
    parts = ds_cfg.context_parts or list(OPTIONS["context_parts"].default)
    context = _prism_context(survey, parts, ds_cfg.max_item_chars, idx=idx, source=source)
    history = need_list(row, "conversation_history", idx=idx, source=source, what="prism preset (the human pair)")
    meta: dict[str, Any] = {"user_id": str(row["user_id"])}
    how = ds_cfg.rejected_response or OPTIONS["rejected_response"].default
    pair = _prism_pair(history, how, f"{row.get('conversation_id', idx)}")
    if pair is not None:
        set_human_pair(meta, clean_text(pair[0]), clean_text(pair[1]))
    return preset_example(idx, query, context, source, meta, what=f"survey fields {parts} are all empty")


PRESET = Preset("prism", _prism_split, read=_prism_read, options=OPTIONS,
                card="https://huggingface.co/datasets/HannahRoseKirk/prism-alignment",
                license="human text CC-BY-4.0, model text CC-BY-NC-4.0")
