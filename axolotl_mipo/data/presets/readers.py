"""What every preset family shares: reading a source as a stream, and reading one field of a row.

Sources are read as a stream (one row at a time; parquet by Arrow record batches, converting only the
columns a preset names) so that a 1.3M-row AlignX file is never held as Python objects. A field a
preset needs and a row lacks is a :class:`MIPODataError` naming the file, the row and the field.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from itertools import repeat
from pathlib import Path
from typing import Any

from axolotl_mipo.data.example import Example
from axolotl_mipo.data.files import clean_text, iter_jsonl, read_json
from axolotl_mipo.errors import MIPODataError

__all__ = ["as_text", "hub_like", "iter_jsonl_rows", "iter_source", "load_hub", "need_list", "need_text",
           "one_line", "opt_text", "preset_example"]


# ----------------------------------------------------------------- fields of a row


def need_text(row: dict, key: str, *, idx: int, source: str, what: str) -> str:
    """A required non-empty string field, or an error naming file, row and field."""
    if key not in row or row[key] is None:
        raise MIPODataError(f"missing; the {what} needs it", row=idx, field=key, source=source)
    value = row[key]
    if not isinstance(value, str):
        raise MIPODataError(f"must be a string, got {type(value).__name__}", row=idx, field=key, source=source)
    value = clean_text(value)
    if not value.strip():
        raise MIPODataError("is empty; remove the row or fill the field", row=idx, field=key, source=source)
    return value


def opt_text(row: dict, key: str, clean: bool = True) -> str | None:
    value = row.get(key)
    if isinstance(value, str) and value.strip():
        return clean_text(value) if clean else value
    return None


def need_list(row: dict, key: str, *, idx: int, source: str, what: str) -> list:
    if key not in row or row[key] is None:
        raise MIPODataError(f"missing; the {what} needs it", row=idx, field=key, source=source)
    value = row[key]
    if not isinstance(value, list):
        raise MIPODataError(f"must be a list, got {type(value).__name__}", row=idx, field=key, source=source)
    return value


def one_line(text: str, limit: int | None) -> str:
    """One line (an item of a rendered list), cut to ``limit`` characters."""
    if "\n" in text or "\r" in text:
        text = " ".join(text.split())
    if limit is None or len(text) <= limit:
        return text
    return text[: max(1, limit - 1)].rstrip() + "\u2026"


def as_text(value: Any) -> str | None:
    """A profile value as text: strings and numbers are kept, containers flattened, empties dropped."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, (bool, int, float)):
        return str(value)
    if isinstance(value, dict):
        parts = [f"{k}={v}" for k, v in ((k, as_text(v)) for k, v in value.items()) if v is not None]
        return ", ".join(parts) or None
    if isinstance(value, list):
        parts = [s for s in map(as_text, value) if s is not None]
        return ", ".join(parts) or None
    return str(value)


def preset_example(idx: int, query: str, context: str, source: str, meta: dict, *, what: str) -> Example:
    if not context.strip():
        raise MIPODataError(f"the rendered user context is empty ({what}); pick other context parts or fill them",
                            row=idx, field="context", source=source)
    return Example(index=idx, messages=(("user", query),), context=context, source=source, meta=meta)


# ----------------------------------------------------------------- sources


def iter_jsonl_rows(path: Path) -> Iterator[Any]:
    """The objects of a JSONL file, in order (an unreadable line as its :class:`~axolotl_mipo.data.files.BadLine`)."""
    for _, obj in iter_jsonl(path):
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
        yield from iter_jsonl_rows(path)
    elif suffix == ".json":
        yield from read_json(path)
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


def hub_like(path: Path) -> bool:
    """A folder laid out like a hub repository (a README with ``configs:``) is read the way the hub is."""
    readme = path / "README.md"
    return path.is_dir() and readme.exists() and "configs:" in readme.read_text(encoding="utf-8", errors="ignore")


def load_hub(path: str, name: str | None, split: str) -> Iterable[Any]:
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
    if path.is_dir() and not hub_like(path):
        files = _data_files(ds_cfg, path)
        return (row for f in files for row in _iter_file(f, columns)), str(path)
    if path.is_dir() and ds_cfg.data_files:
        files = [path / f for f in ds_cfg.data_files]
        return (row for f in files for row in _iter_file(f, columns)), str(path)
    ds = load_hub(str(path) if path.is_dir() else ds_cfg.path, name, ds_cfg.split)
    if columns is not None:
        # Arrow-backed: only what the preset reads becomes Python objects
        return _iter_arrow_batches(ds, columns), ds_cfg.path
    return ds, ds_cfg.path


def _iter_arrow_batches(ds, columns: dict[str, tuple[str, ...] | None]) -> Iterator[dict]:
    wanted = [c for c in columns if c in ds.column_names]
    for table in ds.select_columns(wanted).with_format("arrow").iter(batch_size=4096):
        cols = [_column_pylist(table.column(name).combine_chunks(), columns[name]) for name in wanted]
        yield from map(dict, map(zip, repeat(wanted), zip(*cols)))

