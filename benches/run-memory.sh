#!/usr/bin/env bash
# Resident memory per idle, subscribed WebSocket connection: RSS growth of
# the server over N connections, webrocket beside nats-server.
#   benches/run-memory.sh [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
ulimit -n 65536 2>/dev/null || true
bin=${CARGO_TARGET_DIR:-target}/release
cargo build --release -q --bin webrocket-server --bin webrocket-bench
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
cat > "$tmp/bench.toml" <<'TOML'
[limits]
max_connections_per_vhost = 100000
[[vhost]]
path = "/bench"
anonymous = ["READ", "WRITE"]
TOML
cat > "$tmp/nats.conf" <<'CONF'
listen: 127.0.0.1:14223
websocket { listen: "127.0.0.1:9105", no_tls: true }
CONF
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# Private memory only: excludes the shared ring pages the traffic touched.
anon() { awk '/RssAnon/ {print $2}' "/proc/$1/status"; }
measure() { # name pid addr path proto source-net
  local before after abefore aafter
  before=$(rss "$2")
  abefore=$(anon "$2")
  "$bin"/webrocket-bench idle --addr "$3" --path "$4" --connections "$N" --seconds 15 --proto "$5" --source-net "$6" > "$tmp/$1.idle" &
  local bench=$!
  until grep -q ready "$tmp/$1.idle" 2>/dev/null; do sleep 0.5; kill -0 $bench || { echo "$1: load generator failed"; return 1; }; done
  sleep 2
  after=$(rss "$2")
  aafter=$(anon "$2")
  echo "$1: rss before=${before}KiB after=${after}KiB connections=$N per_connection=$(( (after - before) * 1024 / N )) bytes; private (RssAnon) per_connection=$(( (aafter - abefore) * 1024 / N )) bytes"
  kill $bench 2>/dev/null || true
  wait $bench 2>/dev/null || true
}
"$bin"/webrocket-server -c "$tmp/bench.toml" --websocket-addr 127.0.0.1:9104 \
  --backend-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --storage-dir "$tmp/data" --run-dir "$tmp/run" \
  > "$tmp/webrocket.log" 2>&1 &
wpid=$!
nats-server -c "$tmp/nats.conf" > "$tmp/nats.log" 2>&1 &
npid=$!
sleep 1.5
measure webrocket $wpid 127.0.0.1:9104 /bench webrocket 11
measure nats-server $npid 127.0.0.1:9105 / nats 12
