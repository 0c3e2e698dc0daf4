#!/usr/bin/env bash
# A venv that is an existing stack's venv with a newer TRL put in front of it, to test the plugin against the TRL
# the next Axolotl release will pin before any Axolotl release does (Axolotl pins TRL exactly).
#   bash scripts/trl_overlay.sh BASE_VENV OVERLAY_DIR [TRL_VERSION]     (default TRL: 1.16.0)
# The overlay is created with BASE_VENV's interpreter; a .pth file adds BASE_VENV's site-packages (and runs the .pth
# files there, so an editable install of this checkout still resolves) after the overlay's own, where only TRL is
# installed, with --no-deps: everything else is exactly BASE_VENV's. BASE_VENV's console scripts (axolotl,
# accelerate, ...) are copied with the overlay's interpreter, so `axolotl train` and its accelerate re-launch run
# against the newer TRL.
set -euo pipefail
BASE=$(cd "$1" && pwd -P)  # the real path: what its scripts' shebangs name
OVERLAY=$2
TRL=${3:-1.16.0}
BASE_PY=$(grep -E '^executable *=' "$BASE/pyvenv.cfg" | sed 's/^[^=]*= *//')
[ -x "$BASE_PY" ] || BASE_PY=$(readlink -f "$BASE/bin/python")
"$BASE_PY" -m venv "$OVERLAY"
OVERLAY=$(cd "$OVERLAY" && pwd)
SITE=$("$BASE/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
OSITE=$("$OVERLAY/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "import site; site.addsitedir('$SITE')" > "$OSITE/_base_stack.pth"
"$OVERLAY/bin/python" -m pip install -q --no-deps --disable-pip-version-check "trl==$TRL"
for script in "$BASE"/bin/*; do
  name=$(basename "$script")
  [ -e "$OVERLAY/bin/$name" ] && continue
  head -1 "$script" 2>/dev/null | grep -q "^#!$BASE/bin/python" || continue
  { echo "#!$OVERLAY/bin/python"; tail -n +2 "$script"; } > "$OVERLAY/bin/$name"
  chmod +x "$OVERLAY/bin/$name"
done
got=$("$OVERLAY/bin/python" -c "import trl; print(trl.__version__)")
[ "$got" = "$TRL" ] || { echo "trl_overlay: imported trl $got, not $TRL" >&2; exit 1; }
echo "overlay $OVERLAY: $(basename "$BASE")'s stack with trl $got"
