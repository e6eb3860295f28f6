#!/usr/bin/env bash
# Download the benchmark corpus sdists (once; cached in bench/work/extract/sdists).
# Each package gets 3 minutes; one that cannot be fetched is skipped (and simply not in
# the corpus: RESULTS.md lists the sdists actually used).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=bench/work/extract/sdists
mkdir -p "$DIR"
[ -f "$DIR/.done" ] && exit 0
fetch() {
  local pkg=$1
  if ls "$DIR" | grep -qi "^${pkg//-/[-_]}-[0-9]"; then return 0; fi
  timeout 180 python3 -m pip download -q --no-deps --no-binary "$pkg" -d "$DIR" "$pkg" \
    || echo "skipped $pkg (could not download its sdist)" >&2
}
export -f fetch
export DIR
grep -v '^#' bench/extract/packages.txt | grep -v '^$' | xargs -P 2 -I{} bash -c 'fetch {}'
touch "$DIR/.done"
