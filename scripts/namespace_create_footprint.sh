#!/bin/bash
# How long create-namespace takes with the shipped defaults and what it adds to the
# daemon's RSS (docs/decisions/0015-namespace-lifecycle.md).
#   scripts/namespace_create_footprint.sh [BUILD_DIR] [PREFAULT]   (PREFAULT: false (default) | true)
set -euo pipefail
BIN=${1:-build/release}
PREFAULT=${2:-false}
D=$(mktemp -d)
trap 'kill $P 2>/dev/null; wait $P 2>/dev/null; rm -rf "$D"' EXIT
"$BIN/daemon/tierkvd" --print-default-config | sed -e "s|^data_dir = .*|data_dir = \"$D\"|" \
  -e "s|^socket_path = .*|socket_path = \"$D/s.sock\"|" -e "s|^listen = \"127.0.0.1:9464\"|listen = \"127.0.0.1:0\"|" \
  -e "s|^prefault = .*|prefault = $PREFAULT|" > "$D/c.toml"
"$BIN/daemon/tierkvd" --config "$D/c.toml" > "$D/log" 2>&1 &
P=$!
for _ in $(seq 200); do [ -S "$D/s.sock" ] && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {print $2}' /proc/$P/status; }
r0=$(rss)
t0=$(date +%s%N)
"$BIN/client/tierkvctl" --socket "$D/s.sock" create-namespace llama-8b 32 32 8 128 32 bf16 >/dev/null
t1=$(date +%s%N)
r1=$(rss)
echo "prefault=$PREFAULT: create-namespace took $(( (t1 - t0) / 1000000 )) ms; daemon RSS $r0 KiB before, $r1 KiB after"
