#!/usr/bin/env bash
# Fan-out scale curve: one channel, 100-byte data, 1,000, 10,000 and 100,000
# subscribers. At each point webrocket, the ideal server
# (`webrocket-bench ideal`) and nats-server (NATS=0 leaves it out) are
# measured in turn with the same load generator:
#   saturated   closed loop: deliveries/s, publish-to-deliver p50/p99;
#   rate        RATE messages/s (fixed for every point): p50/p99.
#   benches/run-scale.sh [SECONDS] [RATE]      (defaults 6 and 20)
# Where the hard open-files limit allows 100,000 sockets in one process,
# every point runs in one server process. Where it does not, one process
# takes as many as it may (the hard limit less 1,000, rounded down to a
# thousand: 19,000 under a hard limit of 20,000), and the 100,000 point is
# spread over several processes by benches/run-scale-spread.sh (webrocket
# as a cluster, the ideal as shards, nats as a cluster; the `processes`
# column says how many).
# Writes benches/results/scale.csv and plots benches/results/scale.png with
# matplotlib from the repository's .venv (created, and matplotlib
# installed, if missing). Bounded: 2 runs x 3 servers per point of SECONDS
# each, plus connection set-up; about 12 minutes with the defaults when
# the 100,000 point is spread.
# Subscribers connect from a fresh 127.0.N.x source network for each run
# (`fanout --source-net`), so that ports in TIME_WAIT never collide.
# BUILD_LOCK=/path makes the build wait for `flock` on that file.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-6}
RATE=${2:-20}
NATS=${NATS:-1}
hard=$(ulimit -Hn)
spread=0
if [ "$hard" = unlimited ] || [ "$hard" -ge 101000 ]; then
  top=100000
  ulimit -n 101000 2>/dev/null || ulimit -n 110000
else
  top=$(( (hard - 1000) / 1000 * 1000 ))
  ulimit -n "$hard"
  spread=$(( (100000 + top - 1) / top ))
fi
POINTS=${POINTS:-"1000 10000 $top"}
if [ "$NATS" = 1 ] && ! command -v nats-server >/dev/null; then
  echo "needs nats-server (apt-get install nats-server), or NATS=0"; exit 2
fi
bin=${CARGO_TARGET_DIR:-target}/release
${BUILD_LOCK:+flock "$BUILD_LOCK"} cargo build --release -q --bin webrocket-server --bin webrocket-bench
py=.venv/bin/python
[ -x "$py" ] || python3 -m venv .venv
"$py" -c 'import matplotlib' 2>/dev/null || "$py" -m pip install -q matplotlib
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
cat > "$tmp/bench.toml" <<'TOML'
[limits]
max_connections = 200000
max_connections_per_vhost = 200000
[[vhost]]
path = "/bench"
anonymous = ["READ", "WRITE"]
TOML
cat > "$tmp/nats.conf" <<'CONF'
listen: 127.0.0.1:14224
max_connections: 200000
websocket { listen: "127.0.0.1:9143", no_tls: true }
CONF
"$bin"/webrocket-server -c "$tmp/bench.toml" --websocket-addr 127.0.0.1:9141 \
  --backend-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --storage-dir "$tmp/data" --run-dir "$tmp/run" \
  > "$tmp/webrocket.log" 2>&1 &
"$bin"/webrocket-bench ideal --addr 127.0.0.1:9142 > "$tmp/ideal.log" 2>&1 &
servers=(webrocket ideal)
if [ "$NATS" = 1 ]; then
  nats-server -c "$tmp/nats.conf" > "$tmp/nats.log" 2>&1 &
  servers+=(nats)
fi
sleep 1.5

mkdir -p benches/results
csv=benches/results/scale.csv
echo "server,subscribers,mode,rate,published,deliveries_per_sec,p50_us,p99_us,processes" > "$csv"
net=40
field() { echo "$1" | sed -E "s/.*\"$2\":([0-9.]+).*/\\1/"; }
run() { # server subscribers rate
  local target=(--addr 127.0.0.1:9141 --path /bench)
  case $1 in
    ideal) target=(--addr 127.0.0.1:9142 --path /bench) ;;
    nats) target=(--addr 127.0.0.1:9143 --path / --proto nats) ;;
  esac
  net=$(( net + 1 ))
  local out mode=saturated
  [ "$3" -gt 0 ] && mode=rate
  if ! out=$("$bin"/webrocket-bench fanout "${target[@]}" --subscribers "$2" --size 100 \
      --seconds "$SECS" --rate "$3" --source-net "$net" 2>&1); then
    echo "$1 subscribers=$2 $mode: failed: $out"
    return 0
  fi
  echo "$1 subscribers=$2 $mode: $out"
  echo "$1,$2,$mode,$3,$(field "$out" published),$(field "$out" deliveries_per_sec),$(field "$out" p50_us),$(field "$out" p99_us),1" >> "$csv"
  sleep 1   # lets the server finish closing the connections
}
echo "points: $POINTS subscribers (hard open-files limit $hard); $SECS s per run; rate $RATE/s"
for n in $POINTS; do
  for s in "${servers[@]}"; do run "$s" "$n" 0; done
  for s in "${servers[@]}"; do run "$s" "$n" "$RATE"; done
done
if [ "$spread" -gt 0 ]; then
  echo "100000 subscribers: spread over $spread processes"
  kill $(jobs -p) 2>/dev/null || true
  NATS=$NATS benches/run-scale-spread.sh "$csv" 100000 "$spread" "$SECS" "$RATE" 100
fi
"$py" benches/plot-scale.py "$csv" benches/results/scale.png
column -s, -t < "$csv"
echo "wrote $csv and benches/results/scale.png"
