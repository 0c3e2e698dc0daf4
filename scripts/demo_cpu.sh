#!/usr/bin/env bash
# The whole MIPO job on the CPU: build a tiny local Llama, generate the pairs
# with it, and train a LoRA adapter with `axolotl train`. Run it twice: the
# second run reuses the generation cache (see "reusing ... cached generations").
# MIPO_STACK=0.21 runs it on Python 3.12 + axolotl 0.21 (.venv312); see scripts/stack.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stack.sh
bash scripts/setup.sh
export AXOLOTL_DO_NOT_TRACK=1 HF_HUB_OFFLINE=1
# `axolotl train` re-launches itself through `accelerate`, which must be on PATH
export PATH="$PWD/$VENV/bin:$PATH"
"$VENV/bin/python" -m axolotl_mipo.testing.tiny ./tiny-model
"$VENV/bin/axolotl" train example_configs/mipo-tiny-cpu.yml
ls -l outputs/mipo-tiny-cpu/adapter_model.safetensors
