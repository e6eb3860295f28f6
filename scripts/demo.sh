#!/usr/bin/env bash
# The bundled demo, offline: sets up the sandbox's Python (numpy + pandas), builds unitcoder
# and runs every stage on fixtures/demo/corpus with the shipped LLM response cache.
# Output lands in ./demo-work/ (rerunning is a no-op that prints the funnel again).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-sandbox.sh
cargo build --release --locked
./target/release/unitcoder run --config configs/demo.toml --offline "$@"
echo
echo "training data: demo-work/export/ (README.md is the dataset card); every stage's records: demo-work/<stage>/"
