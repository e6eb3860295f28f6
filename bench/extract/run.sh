#!/usr/bin/env bash
# Extract benchmark, all set-up included: download sdists (cached), build the JSONL corpus,
# build unitcoder in release mode, run both extractors, update bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash bench/extract/fetch.sh
WORK=bench/work/extract
if [ ! -f "$WORK/corpus.stats.json" ]; then
  python3 bench/extract/build_corpus.py "$WORK/sdists" "$WORK/corpus.jsonl" > "$WORK/corpus.stats.json"
fi
cargo build --release --locked
python3 bench/extract/bench.py "$@"
