#!/usr/bin/env bash
# Echo through the whole data path, side by side with a Node `ws` echo
# server, under the same load generator (webrocket-bench echo).
#   benches/run-echo.sh [SECONDS] [CONNECTIONS]
# Prints each round, then per size the ratio webrocket/node-ws of the round
# means. BUILD_LOCK=/path makes the build wait for `flock` on that file.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
CONNS=${2:-100}
bin=${CARGO_TARGET_DIR:-target}/release
${BUILD_LOCK:+flock "$BUILD_LOCK"} cargo build --release -q --bin webrocket-server --bin webrocket-bench
(cd benches/peers && npm install --silent --no-audit --no-fund >/dev/null)
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
printf '[server]\necho_path = "/echo"\n' > "$tmp/echo.toml"
"$bin"/webrocket-server -c "$tmp/echo.toml" --websocket-addr 127.0.0.1:9100 \
  --backend-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --storage-dir "$tmp/data" --run-dir "$tmp/run" \
  > "$tmp/webrocket.log" 2>&1 &
node benches/peers/ws-echo.js 9101 > "$tmp/node.log" 2>&1 &
sleep 1.5
bench() { "$bin"/webrocket-bench echo --path /echo --connections "$CONNS" --seconds "$SECONDS_PER_RUN" "$@"; }
rate() { echo "$1" | sed -E 's/.*"messages_per_sec":([0-9.]+).*/\1/'; }
for size in 64 16384; do
  wsum=0 nsum=0
  for round in 1 2; do
    w=$(bench --addr 127.0.0.1:9100 --size "$size")
    n=$(bench --addr 127.0.0.1:9101 --size "$size")
    echo "webrocket size=$size round=$round: $w"
    echo "node-ws   size=$size round=$round: $n"
    wsum=$(( wsum + $(rate "$w") ))
    nsum=$(( nsum + $(rate "$n") ))
  done
  echo "ratio size=$size messages/s (mean of 2 rounds): webrocket/node-ws=$(awk -v a=$wsum -v b=$nsum 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')" \
    "(webrocket=$(( wsum / 2 )) node-ws=$(( nsum / 2 )))"
done
