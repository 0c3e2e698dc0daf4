"""Shared by the scripts' tests: run one of ``scripts/`` as a user would, failing the test on a non-zero exit."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture
def run_script():
    def run(name: str, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
        env = dict(os.environ, AXOLOTL_DO_NOT_TRACK="1", HF_HUB_OFFLINE="1")
        # the scripts start `axolotl train`, which re-launches itself through `accelerate`: both must be on PATH
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        proc = subprocess.run([sys.executable, str(SCRIPTS / name), *args], check=False, env=env,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    return run
