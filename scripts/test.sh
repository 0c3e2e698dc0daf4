#!/usr/bin/env bash
# Set up the stack's venv and run the test suite (CPU only, no network beyond the package index).
#   bash scripts/test.sh                    Python 3.11 + axolotl 0.19 (.venv)
#   MIPO_STACK=0.21 bash scripts/test.sh    Python 3.12 + axolotl 0.21 (.venv312)
# Extra arguments go to pytest (e.g. tests/test_losses.py, -m e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stack.sh
bash scripts/setup.sh
export AXOLOTL_DO_NOT_TRACK=1 HF_HUB_OFFLINE=1
# `axolotl train` re-launches itself through `accelerate`, which must be on PATH
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest -q -rfEs -p no:cacheprovider "$@"
