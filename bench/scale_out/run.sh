#!/usr/bin/env bash
# Scale-out benchmark: what global exact dedup before the LLM stages costs. A real corpus
# (the sandbox environment's site-packages: numpy, pandas, pip, setuptools, ...; or the
# directories given) is extracted by 4 ranks, then each rank takes its share of every
# rank's functions (`run --stop-after share`); compared in the same run with one process's
# extract and with the alternative design where every rank extracts the whole corpus and
# keeps its hash share. Updates bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv-sandbox/bin/python ] || bash scripts/setup-sandbox.sh
cargo build --release --locked
python3 bench/scale_out/bench.py "$@"
