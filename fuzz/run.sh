#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder fed from outside the server.
#
#   fuzz/run.sh                 # every target, 10 million runs each
#   RUNS=100000 fuzz/run.sh     # a short smoke
#   fuzz/run.sh ws_connection   # one target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Runs on the stable
# toolchain without a sanitizer (`-s none`): Rust's own checks (bounds,
# debug assertions, overflow) are what catches a bad input. A crash leaves
# its input under fuzz/artifacts/<target>/ and stops the run with a
# non-zero status; each one found becomes a regression test beside the
# decoder it broke.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=${RUNS:-10000000}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s none
printf '%-16s %12s %8s\n' target runs seconds
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target"
    log=$(mktemp)
    start=$(date +%s)
    if ! cargo fuzz run -s none "$target" -- -runs="$runs" -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: $target failed; see fuzz/artifacts/$target" >&2
        exit 1
    fi
    done_runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -1)
    printf '%-16s %12s %8s\n' "$target" "${done_runs:-?}" "$(($(date +%s) - start))"
    rm -f "$log"
done
