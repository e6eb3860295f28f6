#!/usr/bin/env bash
# Sandbox benchmark, set-up included: the BigCodeBench environment (Python 3.10, pinned
# libraries), a release build, then bench.py (all 1140 tasks both ways: ~15 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup-sandbox.sh --full
cargo build --release --locked
python3 bench/sandbox/bench.py "$@"
