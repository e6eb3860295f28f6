#!/usr/bin/env bash
# Create the Python environment checks run in (found from any directory: see point_here).
#
#   scripts/setup-sandbox.sh            minimal: numpy + pandas on python3 (tests, quick start)
#   scripts/setup-sandbox.sh --full     BigCodeBench's pinned library set on Python 3.10
#                                       (requirements/sandbox-bcb-py310.txt, ~1.2 GB)
#   VENV=path PYTHON=python3.x ...      choose the location / base interpreter
#
# Also installs bubblewrap (strongest isolation) when running as root on Debian/Ubuntu and
# it is missing; without it the sandbox falls back to unshare or none (see `unitcoder doctor`).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-minimal}
if [ "$MODE" = "--full" ]; then
  VENV=${VENV:-.venv-bcb}
  REQ=requirements/sandbox-bcb-py310.txt
  if [ -z "${PYTHON:-}" ]; then
    for c in python3.10 "$HOME/.pyenv/versions/3.10.13/bin/python3.10" $(ls -d "$HOME"/.pyenv/versions/3.10*/bin/python3.10 2>/dev/null); do
      if "$c" -c "import sys; assert sys.version_info[:2] == (3, 10)" >/dev/null 2>&1; then PYTHON=$c; break; fi
    done
  fi
  [ -n "${PYTHON:-}" ] || { echo "the BigCodeBench set is pinned for Python 3.10; set PYTHON=/path/to/python3.10" >&2; exit 1; }
else
  VENV=${VENV:-.venv-sandbox}
  REQ=requirements/sandbox-minimal.txt
  PYTHON=${PYTHON:-python3}
fi

if [ "$(id -u)" = 0 ] && ! command -v bwrap >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "installing bubblewrap ..." >&2
  (apt-get install -y -qq bubblewrap >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1; }) \
    || echo "could not install bubblewrap; the sandbox will use unshare or none" >&2
fi

# The per-user pointer: `unitcoder` finds this environment from any directory (a text file
# with the interpreter's path; a symlink would make Python miss the venv).
point_here() {
  local data="${XDG_DATA_HOME:-$HOME/.local/share}/unitcoder"
  mkdir -p "$data" && echo "$(cd "$VENV" && pwd)/bin/python" > "$data/sandbox-python" \
    && echo "sandbox environment registered in $data/sandbox-python" >&2 || true
}

STAMP="$VENV/.unitcoder-requirements"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && cmp -s "$REQ" "$STAMP"; then
  echo "$VENV is up to date" >&2
  point_here
  exit 0
fi
echo "creating $VENV from $REQ with $PYTHON ..." >&2
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/python" -m pip install -q --prefer-binary -r "$REQ"
cp "$REQ" "$STAMP"
point_here
echo "ready: $VENV/bin/python" >&2
