"""experiments/harness/workers.py: seeds side by side, each with its log and thread count; failures reported."""

import sys

from experiments.harness import run_seed_workers, worker_threads
from experiments.harness.workers import THREADS_ENV

SCRIPT = (f"import os, sys; print('seed', sys.argv[1], 'threads', os.environ['{THREADS_ENV}'], "
          "os.environ['OMP_NUM_THREADS']); sys.exit(int(sys.argv[1]) == 1)")


def test_every_seed_runs_and_the_failed_ones_are_returned(tmp_path):
    failed = run_seed_workers([0, 1, 2], lambda s: [sys.executable, "-c", SCRIPT, str(s)],
                              lambda s: tmp_path / f"seed{s}" / "worker.log", jobs=2, threads=3)
    assert failed == [1]
    for s in (0, 1, 2):
        assert (tmp_path / f"seed{s}" / "worker.log").read_text().strip() == f"seed {s} threads 3 3"
    run_seed_workers([0], lambda s: [sys.executable, "-c", SCRIPT, str(s)],
                     lambda s: tmp_path / f"seed{s}" / "worker.log", jobs=1, threads=1, append=True)
    lines = (tmp_path / "seed0" / "worker.log").read_text().split("\n")
    assert lines[:2] == ["seed 0 threads 3 3", "seed 0 threads 1 1"]


def test_a_worker_reads_its_thread_count_back(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert worker_threads() == 1 and worker_threads(4) == 4
    monkeypatch.setenv(THREADS_ENV, "3")
    assert worker_threads() == 3
