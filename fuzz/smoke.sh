#!/usr/bin/env bash
# Fuzz smoke run for CI: builds the cargo-fuzz targets once, then runs each
# for a fixed time, starting from the committed corpus (fuzz/corpus/<target>)
# and the reproducers (fuzz/regressions/<target>). New inputs go to
# fuzz/corpus-work/<target> (ignored by git), never into the committed corpus.
#
# usage: fuzz/smoke.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 60 (or $FUZZ_SECONDS)
#   TARGET              default: every target of fuzz/Cargo.toml
#
# Environment:
#   FUZZ_SANITIZER  address (default) or none; the code under test is safe
#                   Rust, so `none` runs about twice as fast
#   FUZZ_JOBS       targets run at once (default 1; CI has 2 cores)
#
# Exits non-zero when a target crashes, times out, runs out of memory or
# does not build, after printing the artifact path and how to reproduce it.
# Needs a nightly compiler or RUSTC_BOOTSTRAP=1 on stable (set here).
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-${FUZZ_SECONDS:-60}}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(client_deframer db_parser codec gate_events proxy_header capture_reader)
fi
sanitizer="${FUZZ_SANITIZER:-address}"
jobs="${FUZZ_JOBS:-1}"

# cargo-fuzz needs unstable flags (-Zsanitizer, -Cpasses); this lets the
# stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

started=$(date +%s)
echo "== building ${#targets[@]} targets (sanitizer: $sanitizer)"
for t in "${targets[@]}"; do
    cargo fuzz build --sanitizer "$sanitizer" "$t"
done
echo "== built in $(( $(date +%s) - started )) s"

mkdir -p logs
run_one() {
    local t="$1"
    local log="logs/$t.log"
    local dirs=("corpus-work/$t" "corpus/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    mkdir -p "corpus-work/$t"
    local rc=0
    cargo fuzz run --sanitizer "$sanitizer" "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" \
        -dict=dict/selgate.dict \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?
    local done_line execs
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | tail -n 1 | awk '{print $2}' || true)
    if [ "$rc" -eq 0 ]; then
        echo "ok   $t: ${execs:-?} executions; ${done_line:-no final stats}"
    else
        echo "FAIL $t (exit $rc); log: fuzz/$log"
        grep -E -A1 'panicked at' "$log" | head -n 4 || true
        grep -E '^(SUMMARY|ERROR)|Test unit written to' "$log" | head -n 6 || true
        local artifact
        artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | awk '{print $5}' || true)
        if [ -n "$artifact" ]; then
            echo "artifact: $artifact"
            echo "reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer $t $artifact)"
            echo "minimise:  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin --sanitizer $sanitizer $t $artifact)"
            echo "then add it to fuzz/regressions/$t/ (see FUZZING.md)"
        else
            tail -n 30 "$log"
        fi
    fi
    return "$rc"
}

failed=()
if [ "$jobs" -le 1 ]; then
    for t in "${targets[@]}"; do
        run_one "$t" || failed+=("$t")
    done
else
    # Run up to $jobs targets at once; each writes its own log.
    declare -A pids=()
    for t in "${targets[@]}"; do
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
            wait -n || true
        done
        run_one "$t" > "logs/$t.summary" 2>&1 &
        pids[$t]=$!
    done
    for t in "${targets[@]}"; do
        wait "${pids[$t]}" || failed+=("$t")
        cat "logs/$t.summary"
    done
fi

echo "== fuzz smoke: ${#targets[@]} targets x ${secs} s in $(( $(date +%s) - started )) s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "== FAILED: ${failed[*]}"
    exit 1
fi
