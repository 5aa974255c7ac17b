#!/usr/bin/env bash
# The scale curve's point past one process's open-files limit: SUBSCRIBERS
# subscribers of one channel spread over NODES server processes, each
# holding SUBSCRIBERS/NODES of them, with the load generator spread the
# same way (`webrocket-bench fanout-subscribers` x NODES, one
# `fanout-publisher` keeping the closed loop over UDP on loopback):
#   webrocket  a NODES-node cluster; the publisher is on node PUB_NODE
#              (default 0), the cluster carries each broadcast to the
#              channel's sequencer and from it to the other nodes;
#   ideal      NODES `webrocket-bench ideal` shards that know nothing of
#              one another; the publisher writes each message to every
#              shard (the ideal of a sharded server: no forwarding cost);
#   nats       a NODES-node nats-server cluster (routes); publisher on
#              node 0 (NATS=0 leaves it out).
# Each is run saturated and at RATE messages/s, SECONDS each, like
# benches/run-scale.sh, whose CSV rows it appends to CSV (with the
# processes column set to NODES).
#   benches/run-scale-spread.sh CSV [SUBSCRIBERS] [NODES] [SECONDS] [RATE] [SOURCE_NET]
# Subscribers of process i connect from 127.(SOURCE_NET + i).x.y.
# Expects release binaries in ${CARGO_TARGET_DIR:-target}/release (run-scale.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
CSV=$1
SUBS=${2:-100000}
NODES=${3:-6}
SECS=${4:-6}
RATE=${5:-20}
net=${6:-100}
NATS=${NATS:-1}
bin=${CARGO_TARGET_DIR:-target}/release
per=$(( (SUBS + NODES - 1) / NODES ))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $(( per + 200 )) ]; then
  echo "needs $(( per + 200 )) open files per process, have $(ulimit -n): use more NODES"; exit 2
fi
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
cat > "$tmp/cluster.toml" <<TOML
[limits]
max_connections = $(( SUBS * 2 ))
max_connections_per_vhost = $(( SUBS * 2 ))
[[vhost]]
path = "/bench"
anonymous = ["READ", "WRITE"]
[cluster]
cookie = "bench-spread-cookie-$RANDOM$RANDOM"
TOML
ws_port() { echo $(( 9241 + $1 )); }
ideal_port() { echo $(( 9261 + $1 )); }
nats_port() { echo $(( 9281 + $1 )); }
for i in $(seq 0 $(( NODES - 1 ))); do
  seed=()
  [ "$i" -gt 0 ] && seed=(--seed "127.0.0.1:9221")
  "$bin"/webrocket-server -c "$tmp/cluster.toml" --node-name "n$i" \
    --websocket-addr "127.0.0.1:$(ws_port "$i")" --cluster-addr "127.0.0.1:$(( 9221 + i ))" "${seed[@]}" \
    --backend-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 \
    --storage-dir "$tmp/data$i" --run-dir "$tmp/run$i" > "$tmp/n$i.log" 2>&1 &
  "$bin"/webrocket-bench ideal --addr "127.0.0.1:$(ideal_port "$i")" > "$tmp/ideal$i.log" 2>&1 &
  if [ "$NATS" = 1 ]; then
    cat > "$tmp/nats$i.conf" <<CONF
listen: 127.0.0.1:$(( 14300 + i ))
max_connections: $(( SUBS * 2 ))
websocket { listen: "127.0.0.1:$(nats_port "$i")", no_tls: true }
cluster { name: bench, listen: "127.0.0.1:$(( 6300 + i ))", routes: ["nats-route://127.0.0.1:6300"] }
CONF
    nats-server -c "$tmp/nats$i.conf" > "$tmp/nats$i.log" 2>&1 &
  fi
done
. benches/cluster-formed.sh
wait_formed "$tmp" "$NODES" || exit 1
sleep 2
field() { echo "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\\1/"; }
run() { # server rate
  local port=ws_port path=/bench proto=webrocket pub
  case $1 in
    webrocket) pub=127.0.0.1:$(ws_port ${PUB_NODE:-0}) ;;
    ideal)
      port=ideal_port
      pub=$(for i in $(seq 0 $(( NODES - 1 ))); do printf '127.0.0.1:%s,' "$(ideal_port "$i")"; done)
      pub=${pub%,} ;;
    nats) port=nats_port path=/ proto=nats pub=127.0.0.1:$(nats_port 0) ;;
  esac
  local mode=saturated
  [ "$2" -gt 0 ] && mode=rate
  "$bin"/webrocket-bench fanout-publisher --addr "$pub" --path "$path" --proto "$proto" \
    --size 100 --seconds "$SECS" --rate "$2" --processes "$NODES" --subscribers "$SUBS" \
    --listen 127.0.0.1:9199 > "$tmp/pub.out" 2>&1 &
  local publisher=$! subs=() left=$SUBS
  for i in $(seq 0 $(( NODES - 1 ))); do
    local n=$(( left < per ? left : per ))
    left=$(( left - n ))
    net=$(( net + 1 ))
    "$bin"/webrocket-bench fanout-subscribers --addr "127.0.0.1:$($port "$i")" --path "$path" \
      --proto "$proto" --subscribers "$n" --source-net "$net" --publisher 127.0.0.1:9199 \
      > "$tmp/sub$i.out" 2>&1 &
    subs+=($!)
  done
  local failed=0
  wait "$publisher" || failed=1
  for p in "${subs[@]}"; do wait "$p" || failed=1; done
  local out
  out=$(tail -1 "$tmp/pub.out")
  if [ "$failed" = 1 ]; then
    echo "$1 subscribers=$SUBS processes=$NODES $mode: failed: $out $(tail -qn1 "$tmp"/sub*.out)"
    return 0
  fi
  echo "$1 subscribers=$SUBS processes=$NODES $mode: $out"
  echo "$1,$SUBS,$mode,$2,$(field "$out" published),$(field "$out" deliveries_per_sec),$(field "$out" p50_us),$(field "$out" p99_us),$NODES" >> "$CSV"
  sleep 2   # lets the servers finish closing the connections
}
servers=(webrocket ideal)
[ "$NATS" = 1 ] && servers+=(nats)
for s in "${servers[@]}"; do run "$s" 0; done
for s in "${servers[@]}"; do run "$s" "$RATE"; done
