"""Tests of the dataset presets, one module per family (axolotl_mipo/data/presets/<family>.py), and their helpers."""

import json
from pathlib import Path

from axolotl_mipo.args import MIPODatasetConfig

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "presets"


def cfg(path, fmt, **kw):
    return MIPODatasetConfig(path=str(path), format=fmt, **kw)


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
