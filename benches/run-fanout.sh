#!/usr/bin/env bash
# Fan-out: one channel, many subscribers, 100-byte data; webrocket side by
# side with nats-server (WebSocket listener) under the same load generator.
#   benches/run-fanout.sh [SECONDS] [SUBSCRIBERS]
# Prints, per server: deliveries/s at saturation (closed loop), then
# publish-to-deliver p50/p99 at half of webrocket's saturated publish rate.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
SUBS=${2:-1000}
ulimit -n 65536 2>/dev/null || true
command -v nats-server >/dev/null || { echo "needs nats-server (apt-get install nats-server)"; exit 2; }
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
listen: 127.0.0.1:14222
websocket { listen: "127.0.0.1:9103", no_tls: true }
CONF
"$bin"/webrocket-server -c "$tmp/bench.toml" --websocket-addr 127.0.0.1:9102 \
  --backend-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --storage-dir "$tmp/data" --run-dir "$tmp/run" \
  > "$tmp/webrocket.log" 2>&1 &
nats-server -c "$tmp/nats.conf" > "$tmp/nats.log" 2>&1 &
sleep 1.5
bench() { "$bin"/webrocket-bench fanout --subscribers "$SUBS" --size 100 --seconds "$SECS" "$@"; }
for round in 1 2; do
  w=$(bench --addr 127.0.0.1:9102 --path /bench)
  n=$(bench --addr 127.0.0.1:9103 --path / --proto nats)
  echo "saturated webrocket round=$round: $w"
  echo "saturated nats      round=$round: $n"
done
published=$(echo "$w" | sed -E 's/.*"published":([0-9]+).*/\1/')
rate=$(( published / SECS / 2 ))
[ "$rate" -gt 0 ] || rate=100
for round in 1 2; do
  echo "rate=$rate webrocket round=$round: $(bench --addr 127.0.0.1:9102 --path /bench --rate "$rate")"
  echo "rate=$rate nats      round=$round: $(bench --addr 127.0.0.1:9103 --path / --proto nats --rate "$rate")"
done
