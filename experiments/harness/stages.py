"""Resumable stages, the guard against mixing two plans in one output folder, the CPU clock, and logging."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path


def logger(name: str) -> Callable[[str], None]:
    """A ``log(msg)`` that writes ``[name HH:MM:SS] msg`` to stderr (the studies' progress lines)."""

    def log(msg: str) -> None:
        print(f"[{name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    return log


_log = logger("harness")


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (user + system).

    Recorded beside wall time because the wall time of a run on a shared machine depends on what else
    runs there; the CPU seconds much less."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def check_out(out: Path, plan: dict) -> None:
    """Refuse to mix results of two plans in one folder (resuming needs the same plan).

    The first call writes ``out/plan.json``; a later call with another plan is a ``SystemExit``."""
    rec = out / "plan.json"
    if rec.exists():
        if json.loads(rec.read_text()) != json.loads(json.dumps(plan)):
            raise SystemExit(f"{out} holds results of a different plan ({rec}); use another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        rec.write_text(json.dumps(plan, indent=1))


def stage(path: Path, fn: Callable[[], dict]) -> dict:
    """Run ``fn`` unless its JSON exists (resumable); the JSON is written atomically, with its cost.

    ``fn`` returns a JSON-serializable dict; ``wall_s`` and ``cpu_s`` (this process and its children)
    are added to it. A rerun after a kill reads finished stages back instead of running them again,
    which is also how a committed result recomputes from its stage files."""
    if path.exists():
        _log(f"reusing {path}")
        return json.loads(path.read_text())
    t, c = time.time(), cpu_seconds()
    result = fn()
    result["wall_s"], result["cpu_s"] = time.time() - t, cpu_seconds() - c
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(path)
    return result


def plan_settings(path: Path) -> dict:
    """The YAML block under a ``## Settings`` heading of a pre-registered plan (``PLAN.md``).

    The runner reads its settings from the committed plan itself, so the plan and the run cannot drift."""
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    m = re.search(r"^## Settings\s*$.*?^```yaml\s*$(.*?)^```\s*$", text, re.DOTALL | re.MULTILINE)
    if not m:
        raise SystemExit(f"{path}: no ```yaml block under a '## Settings' heading")
    return yaml.safe_load(m.group(1))
