"""Read input rows and split each into user context and query.

Three generic row formats (``mipo.datasets[].format``), and the dataset presets
of :mod:`axolotl_mipo.data.presets` (``alignx``, ``lamp``, ``prism``,
``community_alignment``), which read a public dataset as published:

* ``context_query`` — a context field and a query field (names configurable);
* ``messages`` — chat messages; the user context is the message whose role is
  ``context_role`` (``system`` by default), or ``context_field`` when set; a
  trailing assistant turn is kept as the row's reference response;
* ``prompt`` — a plain prompt, no user context (the reasoning variant).

Every problem is a :class:`~axolotl_mipo.errors.MIPODataError` that names the
dataset, the row, the field and the fix.
"""

from __future__ import annotations

import gc
import itertools
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from axolotl_mipo.data.example import GOLD_ANSWER_KEY, GOLD_KIND_KEY, Example, set_human_pair
from axolotl_mipo.data.files import BadLine, clean_text, iter_jsonl, read_json
from axolotl_mipo.data.presets import PRESET_NAMES, get_preset, iter_preset_rows
from axolotl_mipo.errors import MIPODataError

__all__ = ["FORMATS_WITHOUT_CONTEXT", "GENERIC_FORMATS", "LoadReport", "clean_text", "load_examples", "read_rows",
           "set_human_pair", "split_row"]

#: the row formats of this module (``mipo.datasets[].format``); the dataset presets add theirs
GENERIC_FORMATS = ("context_query", "messages", "prompt")
#: the formats whose rows carry no user context (the reasoning variant)
FORMATS_WITHOUT_CONTEXT = ("prompt",)

LOG = logging.getLogger(__name__)

_LOCAL_LOADERS = {".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


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
            rows.extend(obj for _, obj in iter_jsonl(f))
        elif f.suffix == ".json":
            rows.extend(read_json(f))
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
    value = clean_text(value)
    if not value.strip():
        raise MIPODataError("is empty; remove the row or fill the field", row=idx, field=field, source=source)
    return value


def _split_messages(
    row: dict, ds_cfg, idx: int, source: str
) -> tuple[tuple[tuple[str, str], ...], str | None, str | None]:
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
        pairs.append((m["role"], clean_text(m["content"])))
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
    if isinstance(row, BadLine):
        raise row.error
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
    else:
        return get_preset(ds_cfg.format).split(row, ds_cfg, idx, source)
    if ds_cfg.reference_field:
        ref = row.get(ds_cfg.reference_field)
        if ref is not None and not isinstance(ref, str):
            raise MIPODataError("must be a string", row=idx, field=ds_cfg.reference_field, source=source)
        ref = clean_text(ref) if ref is not None else None
        reference = ref if ref is not None else reference
    meta: dict[str, Any] = {"reference": reference} if reference is not None else {}
    if ds_cfg.chosen_field:
        pair = [_optional_text(row, f, idx=idx, source=source) for f in (ds_cfg.chosen_field, ds_cfg.rejected_field)]
        if (pair[0] is None) != (pair[1] is None):
            missing = ds_cfg.chosen_field if pair[0] is None else ds_cfg.rejected_field
            raise MIPODataError("is missing while the other response of the human pair is there; fill both or "
                                "leave both empty (a row without a pair)", row=idx, field=missing, source=source)
        set_human_pair(meta, *pair)
    if ds_cfg.user_field:
        uid = row.get(ds_cfg.user_field)
        if uid is None or isinstance(uid, (dict, list)) or not str(uid).strip():
            raise MIPODataError("missing or not a plain id; every row needs its user's id when user_field is set",
                                row=idx, field=ds_cfg.user_field, source=source)
        meta["user_id"] = str(uid)
    if getattr(ds_cfg, "answer_field", None):
        set_gold(meta, row.get(ds_cfg.answer_field), ds_cfg.answer_kind, idx=idx, field=ds_cfg.answer_field,
                 source=source)
    return Example(index=idx, messages=messages, context=context, source=source, meta=meta)


def set_gold(meta: dict, gold: Any, kind: str, *, idx: int, field: str, source: str) -> None:
    """Keep a row's gold answer (a string or a number) for evaluation under :data:`GOLD_KEYS`; the one rule for
    ``answer_field`` and the reasoning presets. Only evaluation reads it (``axolotl-mipo eval``)."""
    if gold is None or isinstance(gold, (bool, dict, list)) or not str(gold).strip():
        raise MIPODataError("missing or not a plain answer; every row needs its gold answer when answer_field is "
                            "set", row=idx, field=field, source=source)
    meta[GOLD_ANSWER_KEY] = gold if isinstance(gold, (int, float)) else clean_text(str(gold)).strip()
    meta[GOLD_KIND_KEY] = kind


def _optional_text(row: dict, field: str, *, idx: int, source: str) -> str | None:
    """A response field that may be absent or null (rows without a pair); any other non-string is an error."""
    value = row.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MIPODataError(f"must be a string, got {type(value).__name__}", row=idx, field=field, source=source)
    value = clean_text(value)
    return value if value.strip() else None


@dataclass
class LoadReport:
    """What loading did to the rows: every skip and merge is counted, none is silent."""

    rows_read: int = 0
    kept: int = 0
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"mipo: read {self.rows_read} rows, kept {self.kept}"]
        if self.duplicates:
            parts.append(f"{self.duplicates} exact duplicates removed")
        if self.skipped:
            parts.append(f"{sum(self.skipped.values())} bad rows skipped ({dict(self.skipped)})")
        return ", ".join(parts)


def _skip_reason(err: MIPODataError) -> str:
    msg = str(err)
    for key in ("not valid JSON", "not valid UTF-8", "missing", "must be", "empty", "no message with role",
                "end with a user turn", "no row in the survey", "must name one of", "no gold output"):
        if key in msg:
            return key
    return "other"


@contextmanager
def _no_gc() -> Iterator[None]:
    # Millions of rows are millions of small acyclic objects (Examples, dicts, tuples); the cyclic collector
    # would rescan the growing heap over and over while they are built. Nothing they hold forms a cycle.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_examples(dataset_cfgs: Sequence, on_bad_row: str = "raise", dedupe: bool = True,
                  report: LoadReport | None = None) -> list[Example]:
    with _no_gc():
        return _load_examples(dataset_cfgs, on_bad_row, dedupe, report)


def _load_examples(dataset_cfgs: Sequence, on_bad_row: str, dedupe: bool,
                   report: LoadReport | None) -> list[Example]:
    """All rows of every configured dataset, split.

    ``on_bad_row="raise"`` stops at the first bad row with an error naming it;
    ``"skip"`` drops bad rows, counts them by reason and logs the first few.
    Exact duplicates (same context and conversation) are removed when ``dedupe``.
    """
    report = report if report is not None else LoadReport()
    examples: list[Example] = []
    seen: set[tuple] = set()
    for ds_cfg in dataset_cfgs:
        if ds_cfg.format in PRESET_NAMES:
            # presets stream their rows: a 1.3M-row file is never held as Python objects
            numbered, source, split = iter_preset_rows(ds_cfg)
        else:
            numbered, source, split = enumerate(read_rows(ds_cfg)), ds_cfg.path, split_row
        if ds_cfg.max_rows is not None:
            numbered = itertools.islice(numbered, ds_cfg.max_rows)
        before = report.rows_read
        for i, r in numbered:
            report.rows_read += 1
            try:
                if isinstance(r, BadLine):
                    raise r.error
                ex = split(r, ds_cfg, i, source)
            except MIPODataError as err:
                if on_bad_row != "skip":
                    raise
                report.skipped[_skip_reason(err)] += 1
                if len(report.first_errors) < 5:
                    report.first_errors.append(str(err))
                continue
            # rows of one user and query with different human pairs are not duplicates
            key = (ex.context, ex.messages, ex.meta.get("human_chosen"), ex.meta.get("human_rejected"))
            if dedupe and key in seen:
                report.duplicates += 1
                continue
            seen.add(key)
            examples.append(ex)
        if report.rows_read == before:
            raise MIPODataError("has zero rows; check the path and split", source=ds_cfg.path)
    report.kept = len(examples)
    LOG.info(report.summary())
    for msg in report.first_errors:
        LOG.warning(f"skipped: {msg}")
    if not examples:
        raise MIPODataError(
            f"no usable rows: {report.rows_read} read, {sum(report.skipped.values())} skipped as bad "
            f"({dict(report.skipped)}); first error: {report.first_errors[0] if report.first_errors else '-'}"
        )
    return examples
