"""Shared by the studies' tests: run a study as a user would, failing the test on a non-zero exit."""

import os
import subprocess
import sys

import pytest


@pytest.fixture
def run_study(experiments_path):
    """``run_study("experiments.grid.run", *args)``: ``python -m`` the study's runner in a subprocess.

    Only the folder exposing ``experiments`` is added to PYTHONPATH (never the repository root), so under
    CI's wheel step the study imports the installed axolotl_mipo, as the test suite does."""

    def run(module: str, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
        env = dict(os.environ, AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (experiments_path, env.get("PYTHONPATH")) if p)
        # the studies start `axolotl train`, which re-launches itself through `accelerate`: both must be on PATH
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        proc = subprocess.run([sys.executable, "-m", module, *args], check=False, env=env,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    return run
