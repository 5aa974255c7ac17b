#!/usr/bin/env bash
# Resident memory per idle, subscribed WebSocket connection at 100,000
# connections, on one machine whose per-process open-file limit is below
# that: NODES webrocket nodes form a cluster on loopback and each takes
# TOTAL/NODES connections (from its own 127.<20+i>.x.y source addresses),
# all subscribed to one channel. Prints each node's RSS growth per
# connection and the mean over every connection.
#   benches/run-memory-cluster.sh [TOTAL] [NODES]
# Needs TOTAL/NODES + about 100 open files per process (ulimit -n).
# BUILD_LOCK=/path makes the build wait for `flock` on that file.
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL=${1:-100000}
NODES=${2:-6}
PER=$(( TOTAL / NODES ))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $(( PER + 100 )) ]; then
  echo "needs $(( PER + 100 )) open files per process, have $(ulimit -n): use more NODES"; exit 2
fi
bin=${CARGO_TARGET_DIR:-target}/release
${BUILD_LOCK:+flock "$BUILD_LOCK"} cargo build --release -q --bin webrocket-server --bin webrocket-bench
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
cat > "$tmp/cluster.toml" <<TOML
[limits]
max_connections_per_vhost = $(( TOTAL * 2 ))
[[vhost]]
path = "/bench"
anonymous = ["READ", "WRITE"]
channels = ["idle"]
[cluster]
cookie = "bench-memory-cookie-$RANDOM$RANDOM"
TOML
ws_port() { echo $(( 9141 + $1 )); }
cl_port() { echo $(( 9161 + $1 )); }
pids=()
for i in $(seq 0 $(( NODES - 1 ))); do
  seed=()
  [ "$i" -gt 0 ] && seed=(--seed "127.0.0.1:$(cl_port 0)")
  "$bin"/webrocket-server -c "$tmp/cluster.toml" --node-name "n$i" \
    --websocket-addr "127.0.0.1:$(ws_port "$i")" --cluster-addr "127.0.0.1:$(cl_port "$i")" "${seed[@]}" \
    --backend-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 \
    --storage-dir "$tmp/data$i" --run-dir "$tmp/run$i" > "$tmp/n$i.log" 2>&1 &
  pids+=($!)
done
. benches/cluster-formed.sh
wait_formed "$tmp" "$NODES" || exit 1
sleep 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
anon() { awk '/RssAnon/ {print $2}' "/proc/$1/status"; }
declare -a before abefore benches
for i in $(seq 0 $(( NODES - 1 ))); do
  before[$i]=$(rss "${pids[$i]}")
  abefore[$i]=$(anon "${pids[$i]}")
done
started=$(date +%s)
for i in $(seq 0 $(( NODES - 1 ))); do
  "$bin"/webrocket-bench idle --addr "127.0.0.1:$(ws_port "$i")" --path /bench --connections "$PER" \
    --seconds 600 --source-net $(( 20 + i )) > "$tmp/idle$i" 2>&1 &
  benches+=($!)
done
for i in $(seq 0 $(( NODES - 1 ))); do
  until grep -q ready "$tmp/idle$i" 2>/dev/null; do
    sleep 0.5
    kill -0 "${benches[$i]}" || { echo "load generator $i failed: $(cat "$tmp/idle$i")"; exit 1; }
  done
done
echo "connected $(( PER * NODES )) subscribed connections in $(( $(date +%s) - started )) s"
sleep 3
grow=0 agrow=0
for i in $(seq 0 $(( NODES - 1 ))); do
  after=$(rss "${pids[$i]}")
  aafter=$(anon "${pids[$i]}")
  grow=$(( grow + after - before[i] ))
  agrow=$(( agrow + aafter - abefore[i] ))
  echo "n$i: rss before=${before[$i]}KiB after=${after}KiB connections=$PER per_connection=$(( (after - before[i]) * 1024 / PER )) bytes; private (RssAnon) per_connection=$(( (aafter - abefore[i]) * 1024 / PER )) bytes"
done
echo "cluster of $NODES: connections=$(( PER * NODES )) per_connection=$(( grow * 1024 / (PER * NODES) )) bytes; private (RssAnon) per_connection=$(( agrow * 1024 / (PER * NODES) )) bytes"
