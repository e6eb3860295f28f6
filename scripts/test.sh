#!/usr/bin/env bash
# Runs every test. Set-up included: on a fresh machine this builds everything it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found: the tests compile generated code with CPython" >&2; exit 1; }
cargo test --all-targets --locked "$@"
