#!/usr/bin/env bash
# Runs unitcoder on the bundled demo corpus, offline. Output lands in ./demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
OUT=${1:-demo-out}
./target/release/unitcoder --input fixtures/extract/py --output "$OUT/extract" --force \
  extract --rejects "$OUT/extract-rejects"
echo
echo "kept functions: $OUT/extract/shard-*.jsonl.zst   (zstdcat to read)"
echo "drops with reasons: $OUT/extract-rejects/"
python3 - "$OUT/extract/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
c = m["counts"]
print(f"documents {c['documents']}  candidates {c['candidates']}  kept {c['kept']}")
for k, v in sorted(c["dropped"].items()):
    print(f"  dropped {k:<22} {v}")
for k, v in sorted(c["bad_input"].items()):
    print(f"  unusable document {k:<12} {v}")
PY
