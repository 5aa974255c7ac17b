#!/usr/bin/env bash
# Echo through the whole data path, side by side with a Node `ws` echo
# server, under the same load generator (webrocket-bench echo).
#   benches/run-echo.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
CONNS=${2:-100}
bin=${CARGO_TARGET_DIR:-target}/release
cargo build --release -q --bin webrocket-server --bin webrocket-bench
(cd benches/peers && npm install --silent --no-audit --no-fund >/dev/null)
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
printf '[server]\necho_path = "/echo"\n' > "$tmp/echo.toml"
"$bin"/webrocket-server -c "$tmp/echo.toml" --websocket-addr 127.0.0.1:9100 \
  --backend-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --storage-dir "$tmp/data" --run-dir "$tmp/run" \
  > "$tmp/webrocket.log" 2>&1 &
node benches/peers/ws-echo.js 9101 > "$tmp/node.log" 2>&1 &
sleep 1.5
for size in 64 16384; do
  for round in 1 2; do
    echo "webrocket size=$size round=$round: $("$bin"/webrocket-bench echo --addr 127.0.0.1:9100 --path /echo --connections "$CONNS" --size "$size" --seconds "$SECONDS_PER_RUN")"
    echo "node-ws   size=$size round=$round: $("$bin"/webrocket-bench echo --addr 127.0.0.1:9101 --path /echo --connections "$CONNS" --size "$size" --seconds "$SECONDS_PER_RUN")"
  done
done
