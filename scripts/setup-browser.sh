#!/usr/bin/env bash
# Headless Chromium for the report's browser test (tests/report.rs renders the demo's report
# and measures every chart). Installed from Debian's packages when running as root (about
# 20 s with warm package lists, a minute on a fresh machine); elsewhere the test says
# SKIPPED and only the structural checks run.
#
# Exit 0: a Chromium is there; 3: none can be had here.
set -euo pipefail
have() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1; }
have && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium (for the report's browser test) ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  started=$(date +%s)
  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
    || true
  have && { echo "chromium installed in $(( $(date +%s) - started )) s" >&2; exit 0; }
fi
echo "no chromium here (not root, or no apt-get): the report's browser test will be skipped" >&2
exit 3
