#!/usr/bin/env bash
# Idle cost and wake-up latency: CPU time an idle server uses over 10 s, and
# the echo round trip of messages that each arrive after 200 ms of silence.
#   benches/run-idle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/release
cargo build --release -q --bin webrocket-server --bin webrocket-bench
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
printf '[server]\necho_path = "/echo"\n' > "$tmp/echo.toml"
"$bin"/webrocket-server -c "$tmp/echo.toml" --websocket-addr 127.0.0.1:9106 \
  --backend-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --storage-dir "$tmp/data" --run-dir "$tmp/run" \
  > "$tmp/webrocket.log" 2>&1 &
pid=$!
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks); sleep 10; t1=$(ticks)
echo "idle: $(( (t1 - t0) * 1000 / hz )) ms of CPU in 10 s"
echo "after-idle echo: $("$bin"/webrocket-bench echo --addr 127.0.0.1:9106 --path /echo --connections 1 --size 64 --seconds 10 --gap-ms 200)"
