"""Seeds side by side: one worker process per seed, at most ``jobs`` at once, each with its own log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from experiments.harness.stages import logger

THREADS_ENV = "EXPERIMENT_THREADS"
_log = logger("harness")


def worker_command(module: str, *args: str) -> list[str]:
    """``python -m module args...`` with this interpreter.

    The worker inherits this process's working directory and environment, so it finds ``experiments``
    the way this process did (the repository root as the working directory, or ``PYTHONPATH``)."""
    return [sys.executable, "-m", module, *args]


def worker_threads(default: int = 1) -> int:
    """The thread count :func:`run_seed_workers` gave this worker (``default`` outside a pool)."""
    return int(os.environ.get(THREADS_ENV, str(default)))


def run_seed_workers(seeds: list[int], command: Callable[[int], list[str]], log_path: Callable[[int], Path],
                     jobs: int, threads: int, append: bool = False) -> list[int]:
    """Run ``command(seed)`` for every seed, ``jobs`` at a time, and return the seeds whose worker failed.

    Each worker writes stdout and stderr to ``log_path(seed)`` (appended when ``append``: a resumed
    run keeps the earlier attempts' lines), runs with ``threads`` torch/OpenMP threads
    (:func:`worker_threads` reads them back), and a failure's last lines are logged here."""
    start = time.time()
    pending = list(seeds)
    running: dict[int, tuple[subprocess.Popen, object]] = {}
    failed: list[int] = []
    while pending or running:
        while pending and len(running) < jobs:
            s = pending.pop(0)
            path = log_path(s)
            path.parent.mkdir(parents=True, exist_ok=True)
            f = path.open("a" if append else "w")
            env = dict(os.environ, **{THREADS_ENV: str(threads)}, OMP_NUM_THREADS=str(threads))
            running[s] = (subprocess.Popen(command(s), stdout=f, stderr=subprocess.STDOUT, env=env), f)
        time.sleep(1)
        for s, (proc, f) in list(running.items()):
            if proc.poll() is not None:
                f.close()
                del running[s]
                _log(f"seed {s} finished (exit {proc.returncode}) at {time.time() - start:.0f}s")
                if proc.returncode != 0:
                    failed.append(s)
                    _log(f"seed {s} failed:\n{log_path(s).read_text(errors='replace')[-3000:]}")
    return failed
