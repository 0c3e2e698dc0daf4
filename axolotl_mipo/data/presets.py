"""``format:`` presets for public personalization datasets, read as published.

Each preset maps one dataset family's schema to an :class:`Example`: the user
context, the query, and where the dataset has them the reference output
(``meta["reference"]``), the user's own human preference pair
(``meta["human_chosen"]`` / ``meta["human_rejected"]``) and a user id
(``meta["user_id"]``). Field names follow the dataset cards cited in each
preset's docstring; fixtures in the tests are written by hand in that shape.

Presets read their files as a stream (one row at a time; parquet by Arrow
record batches) so that a 1.3M-row AlignX file is never held as Python
objects: only the rendered context, query and pair of each row are kept.

A row that lacks a field its preset needs is a :class:`MIPODataError` naming
the file, the row and the field (``on_bad_row: skip`` counts and drops it).
"""

from __future__ import annotations

import csv
import json
import random
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

from axolotl_mipo.data.example import Example
from axolotl_mipo.data.rows import _CONTROL, _read_json, set_human_pair
from axolotl_mipo.data.rows import _iter_jsonl as _iter_jsonl_numbered
from axolotl_mipo.errors import MIPODataError

#: every preset name (``args.py`` validates ``format:`` against these without importing the readers)
PRESET_NAMES = ("alignx", "lamp", "prism", "community_alignment")


# ----------------------------------------------------------------- helpers


# rows.clean_text's character set restricted to ASCII (C1 controls and surrogates are not ASCII)
_ASCII_CONTROL = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


def _clean(value: str) -> str:
    """rows.clean_text, faster on ASCII text (bytes.translate instead of a regex; millions of calls)."""
    if value.isascii():
        raw = value.encode("ascii")
        kept = raw.translate(None, _ASCII_CONTROL)
        return value if len(kept) == len(raw) else kept.decode("ascii")
    return _CONTROL.sub("", value)


def _need_text(row: dict, key: str, *, idx: int, source: str, what: str) -> str:
    """A required non-empty string field, or an error naming file, row and field."""
    if key not in row or row[key] is None:
        raise MIPODataError(f"missing; the {what} needs it", row=idx, field=key, source=source)
    value = row[key]
    if not isinstance(value, str):
        raise MIPODataError(f"must be a string, got {type(value).__name__}", row=idx, field=key, source=source)
    value = _clean(value)
    if not value.strip():
        raise MIPODataError("is empty; remove the row or fill the field", row=idx, field=key, source=source)
    return value


def _opt_text(row: dict, key: str, clean: bool = True) -> str | None:
    value = row.get(key)
    if isinstance(value, str) and value.strip():
        return _clean(value) if clean else value
    return None


def _need_list(row: dict, key: str, *, idx: int, source: str, what: str) -> list:
    if key not in row or row[key] is None:
        raise MIPODataError(f"missing; the {what} needs it", row=idx, field=key, source=source)
    value = row[key]
    if not isinstance(value, list):
        raise MIPODataError(f"must be a list, got {type(value).__name__}", row=idx, field=key, source=source)
    return value


def _short(text: str, limit: int | None) -> str:
    """One line (an item of a rendered list), cut to ``limit`` characters."""
    if "\n" in text or "\r" in text:
        text = " ".join(text.split())
    if limit is None or len(text) <= limit:
        return text
    return text[: max(1, limit - 1)].rstrip() + "\u2026"


def _scalar(value: Any) -> str | None:
    """A profile value as text: strings and numbers are kept, containers flattened, empties dropped."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, (bool, int, float)):
        return str(value)
    if isinstance(value, dict):
        parts = [f"{k}={v}" for k, v in ((k, _scalar(v)) for k, v in value.items()) if v is not None]
        return ", ".join(parts) or None
    if isinstance(value, list):
        parts = [s for s in map(_scalar, value) if s is not None]
        return ", ".join(parts) or None
    return str(value)


def _example(idx: int, query: str, context: str, source: str, meta: dict, *, what: str) -> Example:
    if not context.strip():
        raise MIPODataError(f"the rendered user context is empty ({what}); pick other context parts or fill them",
                            row=idx, field="context", source=source)
    return Example(index=idx, messages=(("user", query),), context=context, source=source, meta=meta)


# ----------------------------------------------------------------- reading


def _iter_jsonl(path: Path) -> Iterator[Any]:
    for _, obj in _iter_jsonl_numbered(path):
        yield obj


def _column_pylist(col, fields: tuple[str, ...] | None) -> list:
    """One Arrow column as Python values; for a list of structs only ``fields`` are converted.

    AlignX rows carry 90-number ``Preference Direction`` vectors at three levels;
    converting them to Python floats would cost ~800 objects per row, so a preset
    names the struct fields it reads and the rest never leaves Arrow.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if fields is None or not pa.types.is_list(col.type) or not pa.types.is_struct(col.type.value_type):
        values = col.to_pylist()
        if fields is not None and pa.types.is_list(col.type):
            # datasets stores a list of structs whose keys differ between rows as JSON text
            values = [[json.loads(v) if isinstance(v, str) else v for v in row] if row is not None else None
                      for row in values]
        return values
    struct_type = col.type.value_type
    flat = pc.list_flatten(col)
    names = [f for f in fields if struct_type.get_field_index(f) >= 0]
    items = list(map(dict, map(zip, repeat(names), zip(*(pc.struct_field(flat, f).to_pylist() for f in names)))))
    out: list = []
    pos = 0
    for n in pc.list_value_length(col).to_pylist():
        if n is None:
            out.append(None)
            continue
        out.append(items[pos:pos + n])
        pos += n
    return out


def _parquet_paths(pf, columns: dict[str, tuple[str, ...] | None]) -> list[str]:
    """Parquet column paths to read: whole top-level columns, and for a list of structs only the leaves of
    the named struct fields (``User-Generated Content.list.element.comment``): the nested 90-value vectors
    are then not even decoded."""
    names = pf.schema_arrow.names
    leaves = [pf.schema.column(i).path for i in range(pf.metadata.num_columns)]
    out: list[str] = []
    for col, fields in columns.items():
        if col not in names:
            continue
        nested = [p for p in leaves if fields and p.startswith(col + ".") and len(p.split(".")) == 4
                  and p.split(".")[-1] in fields]
        out += nested if nested else [col]
    return out


def _iter_parquet(path: Path, columns: dict[str, tuple[str, ...] | None] | None) -> Iterator[dict]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    wanted = [c for c in (columns or names) if c in names]
    paths = _parquet_paths(pf, columns) if columns else None
    for batch in pf.iter_batches(batch_size=4096, columns=paths):
        cols = [_column_pylist(batch.column(name), (columns or {}).get(name)) for name in wanted]
        yield from map(dict, map(zip, repeat(wanted), zip(*cols)))


def _iter_file(path: Path, columns: dict[str, tuple[str, ...] | None] | None = None) -> Iterator[Any]:
    """Rows of one local file, streamed (parquet by record batch, reading only ``columns``; CSV by line)."""
    suffix = path.suffix
    if suffix == ".jsonl":
        yield from _iter_jsonl(path)
    elif suffix == ".json":
        yield from _read_json(path)
    elif suffix == ".parquet":
        yield from _iter_parquet(path, columns)
    elif suffix == ".csv":
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # responses are longer than csv's 128 KiB default
        with path.open(encoding="utf-8", newline="") as f:
            # empty CSV cells are missing values, as pandas / datasets read them
            for row in csv.DictReader(f):
                yield {k: (v if v != "" else None) for k, v in row.items()}
    else:
        raise MIPODataError(f"unsupported file type {suffix!r}; use .jsonl, .json, .csv or .parquet",
                            source=str(path))


def _data_files(ds_cfg, folder: Path) -> list[Path]:
    if ds_cfg.data_files:
        return [folder / f if folder.is_dir() else Path(f) for f in ds_cfg.data_files]
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".jsonl", ".json", ".csv", ".parquet")
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise MIPODataError("the folder has no .jsonl/.json/.csv/.parquet files", source=str(folder))
    return files


def _hub_like(path: Path) -> bool:
    """A folder laid out like a hub repository (a README with ``configs:``) is read the way the hub is."""
    readme = path / "README.md"
    return path.is_dir() and readme.exists() and "configs:" in readme.read_text(encoding="utf-8", errors="ignore")


def _load_hub(path: str, name: str | None, split: str) -> Iterable[Any]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets ships with axolotl
        raise MIPODataError("reading a hub dataset needs the 'datasets' package", source=path) from exc
    try:
        return datasets.load_dataset(path, name, split=split)
    except Exception as exc:  # the datasets library raises many unrelated types here
        raise MIPODataError(
            f"not a local file and could not be loaded as a datasets hub name ({type(exc).__name__}: {exc}); "
            "check mipo.datasets[].path" + (f" and that the repository has a {name!r} config" if name else ""),
            source=path,
        ) from exc


def iter_source(ds_cfg, name: str | None = None,
                columns: dict[str, tuple[str, ...] | None] | None = None) -> tuple[Iterable[Any], str]:
    """``(rows, source name)`` of a preset's ``path``: a file, a folder, a hub-like folder or a hub name.

    ``columns``: the fields a preset reads (for a list of structs, which struct fields), so a parquet
    file converts only those to Python.
    """
    path = Path(ds_cfg.path).expanduser()
    if path.is_file():
        return _iter_file(path, columns), str(path)
    if path.is_dir() and not _hub_like(path):
        files = _data_files(ds_cfg, path)
        return (row for f in files for row in _iter_file(f, columns)), str(path)
    if path.is_dir() and ds_cfg.data_files:
        files = [path / f for f in ds_cfg.data_files]
        return (row for f in files for row in _iter_file(f, columns)), str(path)
    ds = _load_hub(str(path) if path.is_dir() else ds_cfg.path, name, ds_cfg.split)
    if columns is not None:
        # Arrow-backed: only what the preset reads becomes Python objects
        return _iter_arrow_batches(ds, columns), ds_cfg.path
    return ds, ds_cfg.path


def _iter_arrow_batches(ds, columns: dict[str, tuple[str, ...] | None]) -> Iterator[dict]:
    wanted = [c for c in columns if c in ds.column_names]
    for table in ds.select_columns(wanted).with_format("arrow").iter(batch_size=4096):
        cols = [_column_pylist(table.column(name).combine_chunks(), columns[name]) for name in wanted]
        yield from map(dict, map(zip, repeat(wanted), zip(*cols)))


# ------------------------------------------------------------------ AlignX


ALIGNX_PARTS = ("demographics", "comments", "pairs")
# what the alignx preset reads; the 90-value direction vectors stay in Arrow
ALIGNX_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "prompt": None, "chosen": None, "rejected": None, "Demographic Information": None,
    "User-Generated Content": ("prompt", "comment"),
    "Pair-wise Comparative Feedback": ("prompt", "chosen", "rejected"),
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
    query = _need_text(row, "prompt", idx=idx, source=source, what="alignx preset (the query)")
    chosen = _need_text(row, "chosen", idx=idx, source=source, what="alignx preset (the human pair)")
    rejected = _need_text(row, "rejected", idx=idx, source=source, what="alignx preset (the human pair)")
    parts = ds_cfg.context_parts or list(ALIGNX_PARTS)
    n = 4 if ds_cfg.max_items is None else ds_cfg.max_items
    cut = ds_cfg.max_item_chars
    lines: list[str] = []
    if "demographics" in parts:
        demo = _opt_text(row, "Demographic Information", clean=False)
        if demo:
            lines.append("About the user: " + _short(demo, cut))
    if "comments" in parts and n:
        ugc = row.get("User-Generated Content") or []
        if not isinstance(ugc, list):
            raise MIPODataError("must be a list of {prompt, comment, ...}", row=idx,
                                field="User-Generated Content", source=source)
        items = [(_opt_text(u, "prompt", False), _opt_text(u, "comment", False)) for u in ugc[:n]
                 if isinstance(u, dict)]
        items = [(p, c) for p, c in items if c]
        if items:
            lines.append("Comments the user wrote:")
            lines += [f"- on \"{_short(p, cut)}\": {_short(c, cut)}" if p else f"- {_short(c, cut)}"
                      for p, c in items]
    if "pairs" in parts and n:
        pcf = row.get("Pair-wise Comparative Feedback") or []
        if not isinstance(pcf, list):
            raise MIPODataError("must be a list of {prompt, chosen, rejected, ...}", row=idx,
                                field="Pair-wise Comparative Feedback", source=source)
        items = [(_opt_text(p, "prompt", False), _opt_text(p, "chosen", False), _opt_text(p, "rejected", False))
                 for p in pcf[:n] if isinstance(p, dict)]
        items = [t for t in items if t[1] and t[2]]
        if items:
            lines.append("Responses the user preferred:")
            lines += [(f"- to \"{_short(p, cut)}\": " if p else "- ")
                      + f"preferred \"{_short(c, cut)}\" over \"{_short(r, cut)}\"" for p, c, r in items]
    meta: dict[str, Any] = {}
    set_human_pair(meta, chosen, rejected)
    # control characters are removed once from the whole rendered context (the same as per item)
    return _example(idx, query, _clean("\n".join(lines)), source, meta, what=f"parts {parts}")


# -------------------------------------------------------------------- LaMP


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
        text = _scalar(value)
        if text is not None:
            fields.append(f"{key}: {_short(text, cut)}")
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
    query = _need_text(row, "input", idx=idx, source=source, what="lamp preset (the query)")
    profile = _need_list(row, "profile", idx=idx, source=source, what="lamp preset (the user context)")
    n = 8 if ds_cfg.max_items is None and "max_items" not in ds_cfg.model_fields_set else ds_cfg.max_items
    items = _select_items([p for p in profile if isinstance(p, dict)], ds_cfg.item_order or "first", n)
    rendered = [r for r in (_render_item(it, ds_cfg.max_item_chars) for it in items) if r]
    context = "\n".join(f"- {r}" for r in rendered)
    if rendered:
        context = "The user's earlier items:\n" + context
    meta: dict[str, Any] = {}
    reference = _opt_text(row, "output")
    if reference is None and outputs is not None:
        if "id" not in row:
            raise MIPODataError("missing; the outputs_file is matched to questions by id", row=idx, field="id",
                                source=source)
        ref = outputs.get(str(row["id"]))
        if ref is None:
            raise MIPODataError(f"id {row['id']!r} has no gold output in outputs_file {ds_cfg.outputs_file!r}",
                                row=idx, field="id", source=source)
        reference = _clean(ref)
    if reference is not None:
        meta["reference"] = reference
    for key in _USER_KEYS:
        if row.get(key) is not None:
            meta["user_id"] = str(row[key])
            break
    return _example(idx, query, context, source, meta, what="the profile has no text")


# ------------------------------------------------------------------- PRISM


PRISM_DEFAULT_PARTS = ("self_description", "system_string", "stated_prefs")


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
        text = _scalar(survey[key])
        if text is not None:
            lines.append(f"{key.replace('_', ' ')}: {_short(text, cut)}")
    return "\n".join(lines)


class _PrismRow(dict):
    """A conversations row with its user's survey row attached (the join is done while reading)."""

    survey: dict | None = None


def _prism_read(ds_cfg) -> tuple[Iterable[Any], str]:
    """Join ``conversations`` to ``survey`` by ``user_id``; the survey (1,500 users) is held in memory."""
    path = Path(ds_cfg.path).expanduser()
    if path.is_dir() and not _hub_like(path):
        files = {"survey": path / "survey.jsonl", "conversations": path / "conversations.jsonl"}
        for name, f in files.items():
            if not f.exists():
                raise MIPODataError(f"a prism folder needs {f.name} (the {name!r} config of the hub repository)",
                                    source=str(path))
        survey_rows: Iterable[Any] = _iter_jsonl(files["survey"])
        conversations: Iterable[Any] = _iter_jsonl(files["conversations"])
        source = str(files["conversations"])
    else:
        where = str(path) if path.is_dir() else ds_cfg.path
        survey_rows = _load_hub(where, ds_cfg.survey_config, ds_cfg.split)
        conversations = _load_hub(where, ds_cfg.conversations_config, ds_cfg.split)
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
    query = _need_text(row, "opening_prompt", idx=idx, source=source, what="prism preset (the query)")
    if row.get("user_id") is None:
        raise MIPODataError("missing; conversations are joined to the survey by user_id", row=idx,
                            field="user_id", source=source)
    survey = getattr(row, "survey", None)
    if survey is None:
        raise MIPODataError(f"user_id {row['user_id']!r} has no row in the survey; check that survey and "
                            "conversations come from the same release", row=idx, field="user_id", source=source)
    parts = ds_cfg.context_parts or list(PRISM_DEFAULT_PARTS)
    context = _prism_context(survey, parts, ds_cfg.max_item_chars, idx=idx, source=source)
    history = _need_list(row, "conversation_history", idx=idx, source=source, what="prism preset (the human pair)")
    meta: dict[str, Any] = {"user_id": str(row["user_id"])}
    pair = _prism_pair(history, ds_cfg.rejected_response or "worst", f"{row.get('conversation_id', idx)}")
    if pair is not None:
        set_human_pair(meta, _clean(pair[0]), _clean(pair[1]))
    return _example(idx, query, context, source, meta, what=f"survey fields {parts} are all empty")


# ----------------------------------------------------- Community Alignment


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
    return [f"{k.removeprefix('annotator_').replace('_', ' ')}: {_short(str(v), cut)}"
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
        prompt = _opt_text(o, "first_turn_prompt")
        try:
            letter = _ca_letter(o.get("first_turn_preferred_response"), idx=0, source="")
        except MIPODataError:
            continue  # a bad row elsewhere is reported where it is the row, not here
        preferred = _opt_text(o, f"first_turn_response_{letter}") if letter else None
        if prompt and preferred:
            lines.append(f"- to \"{_short(prompt, cut)}\" they preferred: \"{_short(preferred, cut)}\"")
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
    query = _need_text(row, "first_turn_prompt", idx=idx, source=source,
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
        chosen = _need_text(row, f"first_turn_response_{letter}", idx=idx, source=source,
                            what="community_alignment preset (the preferred response)")
        rest = [c for c in _LETTERS if c != letter and _opt_text(row, f"first_turn_response_{c}")]
        if rest:
            if (ds_cfg.rejected_response or "random") == "first":
                pick = rest[0]
            else:
                pick = random.Random(str(row.get("conversation_id", idx))).choice(rest)
            set_human_pair(meta, chosen, _opt_text(row, f"first_turn_response_{pick}"))
    return _example(idx, query, "\n".join(lines), source, meta,
                     what="no annotator_* demographics in the row")


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class Preset:
    """One ``format:`` preset: how to read its rows and how to split one row."""

    name: str
    split: Callable[..., Example]
    read: Callable[[Any], tuple[Iterable[Any], str]] = iter_source
    card: str = ""
    license: str = ""


PRESETS: dict[str, Preset] = {
    "alignx": Preset("alignx", _alignx_split, read=_alignx_read, card="https://huggingface.co/datasets/JinaLeejnl/AlignX",
                     license="see the card"),
    "lamp": Preset("lamp", _lamp_split, card="https://lamp-benchmark.github.io",
                   license="LaMP: CC BY-NC-SA 4.0 (non-commercial)"),
    "prism": Preset("prism", _prism_split, read=_prism_read,
                    card="https://huggingface.co/datasets/HannahRoseKirk/prism-alignment",
                    license="human text CC-BY-4.0, model text CC-BY-NC-4.0"),
    "community_alignment": Preset("community_alignment", _ca_split, read=_ca_read,
                                  card="https://huggingface.co/datasets/facebook/community-alignment-dataset",
                                  license="CC-BY-4.0"),
}
assert tuple(PRESETS) == PRESET_NAMES


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, [*PRESETS, "context_query", "messages", "prompt"], n=1)
        raise MIPODataError(f"unknown format {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    return PRESETS[name]


def iter_preset_rows(ds_cfg) -> tuple[Iterator[tuple[int, Any]], str, Callable[..., Example]]:
    """``(numbered rows, source, split function)`` of one preset dataset, streamed."""
    preset = get_preset(ds_cfg.format)
    rows, source = preset.read(ds_cfg)
    split = preset.split
    if preset.name == "lamp" and ds_cfg.outputs_file:
        outputs = _lamp_outputs(ds_cfg)

        def split(row, cfg, idx, src, _o=outputs):
            return _lamp_split(row, cfg, idx, src, _o)

    return enumerate(rows), source, split
