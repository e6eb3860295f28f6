#!/usr/bin/env bash
# Rebuild fixtures/demo/llm-cache.sqlite: serve fixtures/demo/answers.py on a local port and
# run the demo pipeline against it once, recording every answer in the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-18093}
rm -f fixtures/demo/llm-cache.sqlite*
python3 scripts/demo_llm_server.py "$port" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 1
work=$(mktemp -d)
cargo run --quiet -- run --config configs/demo.toml --work-dir "$work" --base-url "http://127.0.0.1:$port/v1" --max-retries 0
# Compact the cache into a single file (no -wal/-shm next to it).
python3 -c "import sqlite3; c = sqlite3.connect('fixtures/demo/llm-cache.sqlite'); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.execute('PRAGMA journal_mode=DELETE'); c.execute('VACUUM'); c.close()"
rm -rf "$work"
echo "fixtures/demo/llm-cache.sqlite rebuilt"
