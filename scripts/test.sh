#!/usr/bin/env bash
# Runs every test (formatting and clippy gates first). Set-up included: on a fresh machine this creates the sandbox's Python
# environment (numpy + pandas; bubblewrap when root), fetches llama.cpp's server and a tiny
# model for the real-server tests, starts a single-node Slurm for tests/slurm.rs and installs
# headless Chromium for the report's browser test (both from Debian's packages when root;
# skipped with a message where they cannot be), and builds everything it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found: the tests run generated code with CPython" >&2; exit 1; }
bash scripts/setup-sandbox.sh
# A real OpenAI-compatible server for tests/real_server.rs (llama.cpp + a 93 MB model, cached).
bash scripts/setup-llm-server.sh
# A real Slurm for tests/slurm.rs (exit 3: cannot be had here; the test then says SKIPPED).
slurm=0
bash scripts/setup-slurm.sh start || slurm=$?
[ "$slurm" = 0 ] || [ "$slurm" = 3 ] || { echo "scripts/setup-slurm.sh failed ($slurm)" >&2; exit 1; }
# Headless Chromium for tests/report.rs (exit 3: cannot be had here; the test then says
# SKIPPED). Where it is installed the browser check is required, so it cannot skip silently.
browser=0
bash scripts/setup-browser.sh || browser=$?
[ "$browser" = 0 ] || [ "$browser" = 3 ] || { echo "scripts/setup-browser.sh failed ($browser)" >&2; exit 1; }
[ "$browser" = 0 ] && export UNITCODER_REQUIRE_BROWSER=1
export UNITCODER_TEST_PYTHON="$PWD/.venv-sandbox/bin/python"
# Gates: one format (rustfmt.toml) and no clippy warnings, before any test runs.
cargo fmt --check || { echo "cargo fmt --check failed: run 'cargo fmt'" >&2; exit 1; }
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked "$@"
