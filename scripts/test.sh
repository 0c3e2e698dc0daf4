#!/usr/bin/env bash
# Set up and run the test suite (CPU only, no network beyond the package index).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export AXOLOTL_DO_NOT_TRACK=1 HF_HUB_OFFLINE=1
# `axolotl train` re-launches itself through `accelerate`, which must be on PATH
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/python -m pytest -q "$@"
