#!/usr/bin/env bash
# History on vs off, in the same run against one server: fan-out of one
# channel to SUBSCRIBERS (100-byte data) on a vhost without history and on
# one keeping the last 10,000 messages (each delivery then carries offset
# and epoch, and every broadcast is kept), alternating, two rounds each;
# then the time to recover COUNT missed messages with subscribe + since.
# Prints one JSON line per run (webrocket-bench).
#   benches/run-history.sh [SECONDS] [SUBSCRIBERS] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
SUBS=${2:-1000}
COUNT=${3:-10000}
ulimit -n 65536 2>/dev/null || true
bin=${CARGO_TARGET_DIR:-target}/release
cargo build --release -q --bin webrocket-server --bin webrocket-bench
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
# The replay of a recovery must fit half of a session's credit
# (max_pending_bytes) and the channel's history bytes: 10,000 deliveries of
# ~190 bytes are about 1.9 MB.
cat > "$tmp/bench.toml" <<'TOML'
[limits]
max_connections_per_vhost = 100000
max_pending_bytes = "8MiB"
max_history_bytes_per_channel = "8MiB"
[[vhost]]
path = "/bench"
anonymous = ["READ", "WRITE"]
[[vhost]]
path = "/hist"
anonymous = ["READ", "WRITE"]
history_size = 10000
TOML
"$bin"/webrocket-server -c "$tmp/bench.toml" --websocket-addr 127.0.0.1:9104 \
  --backend-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --storage-dir "$tmp/data" --run-dir "$tmp/run" \
  > "$tmp/webrocket.log" 2>&1 &
sleep 1.5
bench() { "$bin"/webrocket-bench fanout --addr 127.0.0.1:9104 --subscribers "$SUBS" --seconds "$SECS" "$@"; }
# The third line is history off with 37 more bytes of data, the size of
# ',"offset":12345,"epoch":"<16 hex>"': the same bytes per delivery as
# with history on, so it separates the wire size from the bookkeeping.
for round in 1 2 3; do
  echo "history off            round=$round: $(bench --path /bench --size 100)"
  echo "history on             round=$round: $(bench --path /hist --size 100)"
  echo "history off, +37 bytes round=$round: $(bench --path /bench --size 137)"
done
for round in 1 2 3; do
  echo "recovery round=$round: $("$bin"/webrocket-bench recovery --addr 127.0.0.1:9104 --path /hist --count "$COUNT")"
done
