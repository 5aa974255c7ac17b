#!/usr/bin/env bash
# Fan-out, 100-byte data: webrocket side by side with the ideal server
# (`webrocket-bench ideal`: one thread, each delivery framed once, one write
# per subscriber per round) and nats-server (WebSocket listener), under the
# same load generator and the same load, rounds interleaved. The publisher
# keeps 64 broadcasts in flight ahead of the slowest subscriber and writes
# what that window allows in one write (a buffering client).
#   benches/run-fanout.sh [SECONDS] [SUBSCRIBERS] [LAYOUTS]
# LAYOUTS (default "1,10") are channel counts: 1 is SUBSCRIBERS on one
# channel; 10 spreads the same SUBSCRIBERS round robin over 10 channels
# (10 x 100 by default) with the publisher cycling through them.
# Prints, per layout and server: deliveries/s at saturation (closed loop),
# the ratios webrocket/ideal and nats/ideal of the round means, then
# publish-to-deliver p50/p99 at half of webrocket's saturated publish rate.
# BUILD_LOCK=/path makes the build wait for `flock` on that file.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
SUBS=${2:-1000}
LAYOUTS=${3:-1,10}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
command -v nats-server >/dev/null || { echo "needs nats-server (apt-get install nats-server)"; exit 2; }
bin=${CARGO_TARGET_DIR:-target}/release
${BUILD_LOCK:+flock "$BUILD_LOCK"} cargo build --release -q --bin webrocket-server --bin webrocket-bench
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
"$bin"/webrocket-bench ideal --addr 127.0.0.1:9131 > "$tmp/ideal.log" 2>&1 &
nats-server -c "$tmp/nats.conf" > "$tmp/nats.log" 2>&1 &
sleep 1.5
bench() { "$bin"/webrocket-bench fanout --subscribers "$SUBS" --size 100 --seconds "$SECS" "$@"; }
field() { echo "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\\1/"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
for channels in ${LAYOUTS//,/ }; do
  layout="channels=$channels subscribers=$SUBS"
  on=(--channels "$channels")
  wsum=0 isum=0 nsum=0
  for round in 1 2; do
    w=$(bench --addr 127.0.0.1:9102 --path /bench "${on[@]}")
    i=$(bench --addr 127.0.0.1:9131 --path /bench "${on[@]}")
    n=$(bench --addr 127.0.0.1:9103 --path / --proto nats "${on[@]}")
    echo "saturated $layout webrocket round=$round: $w"
    echo "saturated $layout ideal     round=$round: $i"
    echo "saturated $layout nats      round=$round: $n"
    wsum=$(( wsum + $(field "$w" deliveries_per_sec) ))
    isum=$(( isum + $(field "$i" deliveries_per_sec) ))
    nsum=$(( nsum + $(field "$n" deliveries_per_sec) ))
  done
  echo "ratio $layout deliveries/s (mean of 2 rounds): webrocket/ideal=$(ratio $wsum $isum)" \
    "nats/ideal=$(ratio $nsum $isum) (webrocket=$(( wsum / 2 )) ideal=$(( isum / 2 )) nats=$(( nsum / 2 )))"
  published=$(field "$w" published)
  rate=$(( published / SECS / 2 ))
  [ "$rate" -gt 0 ] || rate=100
  for round in 1 2; do
    echo "rate=$rate $layout webrocket round=$round: $(bench --addr 127.0.0.1:9102 --path /bench "${on[@]}" --rate "$rate")"
    echo "rate=$rate $layout ideal     round=$round: $(bench --addr 127.0.0.1:9131 --path /bench "${on[@]}" --rate "$rate")"
    echo "rate=$rate $layout nats      round=$round: $(bench --addr 127.0.0.1:9103 --path / --proto nats "${on[@]}" --rate "$rate")"
  done
done
