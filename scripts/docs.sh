#!/usr/bin/env bash
# The documentation site (mkdocs-material, pages under docs/, config in mkdocs.yml).
#   bash scripts/docs.sh serve    build and serve it on http://127.0.0.1:8000, rebuilding on every change
#   bash scripts/docs.sh build    build it into site/ in strict mode (a broken link or a missing page fails): CI
# It makes its own small virtual environment (.venv-docs, or $MIPO_DOCS_VENV) from docs/requirements.txt: the
# site needs no torch or Axolotl, so it never touches the training environments.
set -euo pipefail
export NO_MKDOCS_2_WARNING=1  # the theme's end-of-life notice: see docs/contributing.md
cd "$(dirname "$0")/.."
cmd=${1:-serve}
shift || true
VENV=${MIPO_DOCS_VENV:-.venv-docs}
if [ "$cmd" = build ]; then
  # strict mode counts only the warnings mkdocs logs, and --quiet hides them: a quiet build passes broken links
  for a in "$@"; do
    case "$a" in -q|--quiet) echo "docs.sh build: $a would hide the warnings strict mode fails on" >&2; exit 2 ;; esac
  done
fi
if [ ! -x "$VENV/bin/mkdocs" ] || ! cmp -s docs/requirements.txt "$VENV/.requirements"; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -r docs/requirements.txt
  cp docs/requirements.txt "$VENV/.requirements"
fi
case "$cmd" in
  serve) exec "$VENV/bin/mkdocs" serve --strict "$@" ;;
  build) exec "$VENV/bin/mkdocs" build --strict "$@" ;;
  *) echo "usage: bash scripts/docs.sh [serve|build] [mkdocs options]" >&2; exit 2 ;;
esac
