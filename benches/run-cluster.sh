#!/usr/bin/env bash
# Cluster: three webrocket nodes on loopback (n0, n1, n2) against one
# stand-alone node, under the same load generator as run-fanout.sh.
#   benches/run-cluster.sh [SECONDS] [SUBSCRIBERS] [RATE]
# Prints, as JSON lines from webrocket-bench:
#  (a) deliveries/s at saturation (closed loop), one channel, SUBSCRIBERS
#      subscribers: spread round robin over the three nodes with the
#      publisher on a node that does not order the channel (every message
#      crosses two links: FWD to the sequencer, DLV to the third node), then
#      the same load on the stand-alone node;
#  (b) publish-to-deliver p50/p99 at RATE messages/s to one subscriber, for
#      each placement of publisher and subscriber relative to the channel's
#      sequencer (0, 1 or 2 cluster hops), then the stand-alone node.
# Bounded: about 2 x SECONDS + 6 x SECONDS/2 of load plus start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
SUBS=${2:-1000}
RATE=${3:-500}
LAT_SECS=$(( SECS / 2 > 0 ? SECS / 2 : 1 ))
ulimit -n 65536 2>/dev/null || true
bin=${CARGO_TARGET_DIR:-target}/release
cargo build --release -q --bin webrocket-server --bin webrocket-bench
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
cat > "$tmp/bench.toml" <<'TOML'
[limits]
max_connections_per_vhost = 100000
[[vhost]]
path = "/bench"
anonymous = ["READ", "WRITE"]
# Declared, so the channel exists from the start on every node.
channels = ["bench"]
TOML
{ cat "$tmp/bench.toml"; printf '[cluster]\ncookie = "bench-cluster-cookie-%s"\n' "$RANDOM$RANDOM"; } \
  > "$tmp/cluster.toml"

ws_port() { echo $(( 9111 + $1 )); }        # n0..n2: 9111..9113
cl_port() { echo $(( 9121 + $1 )); }        # cluster links: 9121..9123
single=127.0.0.1:9114
for i in 0 1 2; do
  seed=()
  [ "$i" -gt 0 ] && seed=(--seed "127.0.0.1:$(cl_port 0)")
  "$bin"/webrocket-server -c "$tmp/cluster.toml" --node-name "n$i" \
    --websocket-addr "127.0.0.1:$(ws_port "$i")" --cluster-addr "127.0.0.1:$(cl_port "$i")" "${seed[@]}" \
    --backend-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 \
    --storage-dir "$tmp/data$i" --run-dir "$tmp/run$i" > "$tmp/n$i.log" 2>&1 &
done
"$bin"/webrocket-server -c "$tmp/bench.toml" --websocket-addr "$single" \
  --backend-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 \
  --storage-dir "$tmp/data-single" --run-dir "$tmp/run-single" > "$tmp/single.log" 2>&1 &

. benches/cluster-formed.sh
wait_formed "$tmp" 3 || exit 1
grep -q "webrocket-server ready" "$tmp/single.log" || sleep 1

seq_node=$("$bin"/webrocket-bench sequencer --nodes n0,n1,n2 --vhost /bench --channel bench)
s=${seq_node#n}                      # the sequencer of /bench "bench"
o=$(( (s + 1) % 3 )); t=$(( (s + 2) % 3 ))   # the two other nodes
addr() { echo "127.0.0.1:$(ws_port "$1")"; }
echo "sequencer of /bench bench: n$s; publisher for (a): n$o"
bench() { "$bin"/webrocket-bench fanout --path /bench --size 100 "$@"; }

for round in 1 2; do
  echo "(a) saturated cluster  round=$round subs on n0,n1,n2, pub on n$o:" \
    "$(bench --addr "$(addr "$o")" --sub-addr "$(addr 0),$(addr 1),$(addr 2)" --subscribers "$SUBS" --seconds "$SECS")"
  echo "(a) saturated single   round=$round:" \
    "$(bench --addr "$single" --subscribers "$SUBS" --seconds "$SECS")"
done

lat() { bench --subscribers 1 --rate "$RATE" --seconds "$LAT_SECS" "$@"; }
echo "(b) rate=$RATE pub n$s, sub n$s (same node, sequencer; 0 hops):" \
  "$(lat --addr "$(addr "$s")" --sub-addr "$(addr "$s")")"
echo "(b) rate=$RATE pub n$s, sub n$o (other node; 1 hop DLV):" \
  "$(lat --addr "$(addr "$s")" --sub-addr "$(addr "$o")")"
echo "(b) rate=$RATE pub n$o, sub n$s (other node; 1 hop FWD):" \
  "$(lat --addr "$(addr "$o")" --sub-addr "$(addr "$s")")"
echo "(b) rate=$RATE pub n$o, sub n$t (other node; 2 hops FWD+DLV):" \
  "$(lat --addr "$(addr "$o")" --sub-addr "$(addr "$t")")"
echo "(b) rate=$RATE pub n$o, sub n$o (same node, not sequencer; 2 hops):" \
  "$(lat --addr "$(addr "$o")" --sub-addr "$(addr "$o")")"
echo "(b) rate=$RATE single node:" \
  "$(lat --addr "$single")"
