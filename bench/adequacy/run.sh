#!/usr/bin/env bash
# Test-adequacy benchmark, set-up included: the BigCodeBench environment (Python 3.10, pinned
# libraries), a release build, the mutant-throughput/coverage-cost bench, then bench.py
# (BigCodeBench's canonical solutions with their human tests, adequacy off and on).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup-sandbox.sh --full
cargo build --release --locked
cargo bench --bench adequacy_throughput
python3 bench/adequacy/bench.py "$@"
