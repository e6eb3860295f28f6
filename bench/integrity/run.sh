#!/usr/bin/env bash
# False-positive rates of the integrity rules, set-up included: the BigCodeBench environment
# (Python 3.10, pinned libraries), a release build, a demo run (its honest answers), then
# the rules on BigCodeBench's canonical solutions and human tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup-sandbox.sh --full
cargo build --release --locked
work=bench/work/integrity-demo
rm -rf "$work"
target/release/unitcoder --quiet run --config configs/demo.toml --offline --work-dir "$work"
UNITCODER_DEMO_WORK="$work" cargo bench --bench integrity_rules
