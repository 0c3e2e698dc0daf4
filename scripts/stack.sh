# Sourced by setup.sh, test.sh and demo_cpu.sh: the tested stack that MIPO_STACK selects.
#   MIPO_STACK=0.19 (default)  .venv     Python 3.11, CPU torch 2.13.0 (from the local wheel dir), axolotl 0.19.0, trl 1.9
#   MIPO_STACK=0.21            .venv312  Python 3.12, torch 2.14.1, axolotl 0.21.0, trl 1.14
# PYTHON overrides the interpreter that creates the venv.
MIPO_STACK=${MIPO_STACK:-0.19}

# the newest Python X.Y: PATH first (a pyenv shim counts only if it runs), then pyenv's own versions
find_python() {
  local want=$1 cand root
  for cand in "python$want" python3; do
    if command -v "$cand" >/dev/null 2>&1 &&
       "$cand" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" 2>/dev/null; then
      command -v "$cand"; return 0
    fi
  done
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  cand=$(ls -d "$root"/versions/"$want".*/bin/python"$want" 2>/dev/null | sort -V | tail -1)
  if [ -n "$cand" ] && [ -x "$cand" ]; then echo "$cand"; return 0; fi
  echo "no Python $want found (PATH, pyenv); set PYTHON=/path/to/python$want" >&2
  return 1
}

case "$MIPO_STACK" in
  0.19) VENV=.venv;    PY_VERSION=3.11; STACK_PINS=("torch==2.13.0" "axolotl==0.19.0") ;;
  0.21) VENV=.venv312; PY_VERSION=3.12; STACK_PINS=("torch==2.14.1" "axolotl==0.21.0") ;;
  *) echo "MIPO_STACK=$MIPO_STACK: use 0.19 (Python 3.11) or 0.21 (Python 3.12)" >&2; exit 2 ;;
esac
