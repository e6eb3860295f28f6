#!/usr/bin/env bash
# Download the benchmark corpus sdists (once; cached in bench/work/extract/sdists).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=bench/work/extract/sdists
mkdir -p "$DIR"
[ -f "$DIR/.done" ] && exit 0
grep -v '^#' bench/extract/packages.txt | grep -v '^$' | xargs -P 2 -n 4 \
  python3 -m pip download -q --no-deps --no-binary :all: -d "$DIR"
touch "$DIR/.done"
