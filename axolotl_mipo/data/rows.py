"""Read input rows and split each into user context and query.

Three row formats (``mipo.datasets[].format``):

* ``context_query`` — a context field and a query field (names configurable);
* ``messages`` — chat messages; the user context is the message whose role is
  ``context_role`` (``system`` by default), or ``context_field`` when set; a
  trailing assistant turn is kept as the row's reference response;
* ``prompt`` — a plain prompt, no user context (the reasoning variant).

Every problem is a :class:`~axolotl_mipo.errors.MIPODataError` that names the
dataset, the row, the field and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from axolotl_mipo.data.example import Example
from axolotl_mipo.errors import MIPODataError

_LOCAL_LOADERS = {".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MIPODataError(
                    f"line {lineno} is not valid UTF-8 ({exc.reason} at byte {exc.start}); re-encode the file as UTF-8",
                    source=str(path),
                ) from None
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as exc:
                raise MIPODataError(
                    f"line {lineno} is not valid JSON ({exc.msg} at column {exc.colno}); fix or delete that line",
                    source=str(path),
                ) from None


def _read_json(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise MIPODataError(f"file is not valid UTF-8 ({exc.reason}); re-encode it", source=str(path)) from None
    except json.JSONDecodeError:
        # a .json file that is really JSON Lines is common enough to accept
        return [obj for _, obj in _iter_jsonl(path)]
    if isinstance(data, dict):
        for key in ("data", "rows", "train"):
            if isinstance(data.get(key), list):
                return data[key]
        raise MIPODataError("a .json file must hold a list of rows (or {'data': [...]})", source=str(path))
    if not isinstance(data, list):
        raise MIPODataError("a .json file must hold a list of rows", source=str(path))
    return data


def read_rows(ds_cfg) -> list[Any]:
    """Raw rows of one ``mipo.datasets`` entry, in file order."""
    path = Path(ds_cfg.path).expanduser()
    files: list[Path]
    if ds_cfg.data_files:
        files = [path / f if path.is_dir() else Path(f) for f in ds_cfg.data_files]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json", *_LOCAL_LOADERS))
        if not files:
            raise MIPODataError(
                "the folder has no .jsonl/.json/.csv/.parquet files; point mipo.datasets[].path at a file",
                source=str(path),
            )
    elif path.exists():
        files = [path]
    else:
        return _read_hub(ds_cfg)
    rows: list[Any] = []
    for f in files:
        if not f.exists():
            raise MIPODataError("file not found; check mipo.datasets[].path / data_files", source=str(f))
        if f.suffix == ".jsonl":
            rows.extend(obj for _, obj in _iter_jsonl(f))
        elif f.suffix == ".json":
            rows.extend(_read_json(f))
        elif f.suffix in _LOCAL_LOADERS:
            import datasets

            ds = datasets.load_dataset(_LOCAL_LOADERS[f.suffix], data_files=str(f), split="train")
            rows.extend(ds)
        else:
            raise MIPODataError(
                f"unsupported file type {f.suffix!r}; use .jsonl, .json, .csv or .parquet", source=str(f)
            )
    return rows


def _read_hub(ds_cfg) -> list[Any]:
    import datasets

    try:
        ds = datasets.load_dataset(ds_cfg.path, split=ds_cfg.split)
    except Exception as exc:  # the datasets library raises many unrelated types here
        raise MIPODataError(
            f"not a local file and could not be loaded as a datasets hub name ({type(exc).__name__}: {exc}); "
            "check mipo.datasets[].path",
            source=ds_cfg.path,
        ) from exc
    return list(ds)


def _text(row: dict, field: str, *, idx: int, source: str, fix: str) -> str:
    if field not in row or row[field] is None:
        raise MIPODataError(f"missing; {fix}", row=idx, field=field, source=source)
    value = row[field]
    if not isinstance(value, str):
        raise MIPODataError(
            f"must be a string, got {type(value).__name__}; convert it to text", row=idx, field=field, source=source
        )
    if not value.strip():
        raise MIPODataError("is empty; remove the row or fill the field", row=idx, field=field, source=source)
    return value


def _split_messages(row: dict, ds_cfg, idx: int, source: str) -> tuple[tuple[tuple[str, str], ...], str | None, str | None]:
    field = ds_cfg.messages_field
    msgs = row.get(field)
    if msgs is None:
        raise MIPODataError(
            "missing; set mipo.datasets[].messages_field to the field holding the chat messages",
            row=idx, field=field, source=source,
        )
    if not isinstance(msgs, list) or not msgs:
        raise MIPODataError("must be a non-empty list of {role, content} messages", row=idx, field=field, source=source)
    pairs: list[tuple[str, str]] = []
    for j, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise MIPODataError(
                f"message {j} must be a dict with string 'role' and 'content'", row=idx, field=field, source=source
            )
        pairs.append((m["role"], m["content"]))
    context: str | None = None
    if ds_cfg.context_field:
        context = _text(row, ds_cfg.context_field, idx=idx, source=source,
                        fix="set mipo.datasets[].context_field to the field holding the user context")
    else:
        found = [j for j, (r, _) in enumerate(pairs) if r == ds_cfg.context_role]
        if not found:
            raise MIPODataError(
                f"no message with role {ds_cfg.context_role!r} holds the user context; set "
                "mipo.datasets[].context_role (or context_field) to where the context is",
                row=idx, field=field, source=source,
            )
        context = pairs.pop(found[0])[1]
        if not context.strip():
            raise MIPODataError(f"the {ds_cfg.context_role!r} message (the user context) is empty",
                                row=idx, field=field, source=source)
    reference = None
    if pairs and pairs[-1][0] == "assistant":
        reference = pairs.pop()[1]
    if not pairs or pairs[-1][0] != "user":
        raise MIPODataError(
            "the conversation must end with a user turn (after the context, and an optional final assistant "
            "reference) so the model has something to answer",
            row=idx, field=field, source=source,
        )
    for r, c in pairs:
        if r == "user" and not c.strip():
            raise MIPODataError("a user message is empty", row=idx, field=field, source=source)
    return tuple(pairs), context, reference


def split_row(row: Any, ds_cfg, idx: int, source: str) -> Example:
    """One raw row -> :class:`Example` (raises :class:`MIPODataError` naming row and field)."""
    if not isinstance(row, dict):
        raise MIPODataError(f"must be an object with named fields, got {type(row).__name__}", row=idx, source=source)
    reference: str | None = None
    if ds_cfg.format == "context_query":
        cfield = ds_cfg.context_field or "context"
        context = _text(row, cfield, idx=idx, source=source,
                        fix="set mipo.datasets[].context_field to the field holding the user context")
        query = _text(row, ds_cfg.query_field, idx=idx, source=source,
                      fix="set mipo.datasets[].query_field to the field holding the query")
        messages: tuple[tuple[str, str], ...] = (("user", query),)
    elif ds_cfg.format == "messages":
        messages, context, reference = _split_messages(row, ds_cfg, idx, source)
    elif ds_cfg.format == "prompt":
        prompt = _text(row, ds_cfg.prompt_field, idx=idx, source=source,
                       fix="set mipo.datasets[].prompt_field to the field holding the prompt")
        messages, context = (("user", prompt),), None
    else:  # the args model restricts this; kept for callers that bypass it
        raise MIPODataError(f"unknown format {ds_cfg.format!r}", source=source)
    if ds_cfg.reference_field:
        ref = row.get(ds_cfg.reference_field)
        if ref is not None and not isinstance(ref, str):
            raise MIPODataError("must be a string", row=idx, field=ds_cfg.reference_field, source=source)
        reference = ref if ref is not None else reference
    meta = {"reference": reference} if reference is not None else {}
    return Example(index=idx, messages=messages, context=context, source=source, meta=meta)


def load_examples(dataset_cfgs: Sequence) -> list[Example]:
    """All rows of every configured dataset, split; raises on the first bad row."""
    examples: list[Example] = []
    for ds_cfg in dataset_cfgs:
        rows = read_rows(ds_cfg)
        if ds_cfg.max_rows is not None:
            rows = rows[: ds_cfg.max_rows]
        if not rows:
            raise MIPODataError("has zero rows; check the path and split", source=ds_cfg.path)
        examples.extend(split_row(r, ds_cfg, i, ds_cfg.path) for i, r in enumerate(rows))
    return examples
