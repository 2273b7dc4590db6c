#!/usr/bin/env bash
# What the admin endpoint costs the gate: the benchmark's closed loop
# (tests/bench: load -> selgate -> reflector) with the admin endpoint on,
# first without API calls, then with 100 API requests per second (status,
# a page of sessions, the per-IP table, events, in turn) during the same
# window. Reports the gate's CPU per round trip of each, and their ratio.
# Pairs of runs alternate (quiet, busy, quiet, busy...) so drift on a shared
# machine falls on both. Everything on 127.0.0.0/8; every process stops.
#
#   bash tests/admin-bench/admin-load.sh     # ADMIN_BENCH_RUNS=3 ADMIN_BENCH_SESSIONS=1000
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${ADMIN_BENCH_RUNS:-3}
SESSIONS=${ADMIN_BENCH_SESSIONS:-1000}
DURATION=${ADMIN_BENCH_DURATION:-10}
RATE=${ADMIN_BENCH_API_RATE:-100}
cargo build --release -q -p selgate -p selgate-bench
BIN=target/release
WORK=$(mktemp -d "${TMPDIR:-/tmp}/selgate-admin-bench.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
PIN_GATE=(taskset -c 0)
PIN_LOAD=(taskset -c 1)
export SELGATE_ADMIN_TOKEN=bench-admin-token-0123456789abcdef

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

run_once() { # $1 = quiet|busy, $2 = run number
    local mode=$1 n=$2 base=$((28100 + n * 10))
    "${PIN_LOAD[@]}" $BIN/reflector --client-listen 127.0.0.1:$((base + 1)) \
        --db-listen 127.0.0.1:$((base + 2)) --max-secs 300 >"$WORK/refl.log" 2>&1 &
    local refl=$!
    PIDS+=("$refl")
    wait_port $((base + 2))
    "${PIN_GATE[@]}" $BIN/selgate run --listen 127.0.0.1:$((base + 3)) \
        --upstream 127.0.0.1:$((base + 2)) --admin 127.0.0.1:$((base + 4)) \
        --status-interval 0 --drain-timeout 1s --max-sessions 10000 --max-sessions-per-ip 10000 \
        --max-connects-per-ip-1s 100000 --max-connects-per-ip-10s 100000 \
        --max-frames-per-sec 1000000 --idle-timeout 1h --first-frame-timeout 1h \
        >"$WORK/gate.log" 2>&1 &
    local gate=$!
    PIDS+=("$gate")
    wait_port $((base + 3))
    wait_port $((base + 4))
    local api=
    if [[ $mode == busy ]]; then
        "${PIN_LOAD[@]}" python3 tests/admin-bench/api-client.py 127.0.0.1:$((base + 4)) "$RATE" \
            $((DURATION + 20)) >"$WORK/api-$n.txt" 2>&1 &
        api=$!
        PIDS+=("$api")
    fi
    "${PIN_LOAD[@]}" $BIN/load --target 127.0.0.1:$((base + 3)) --sessions "$SESSIONS" \
        --mode closed --payload 24 --duration "$DURATION" --warmup 2 \
        --gate-pid "$gate" --reflector-pid "$refl" --label "$mode/$n" \
        --out "$WORK/results.txt" --connect-timeout 60 >>"$WORK/load.log" 2>&1
    [[ -n $api ]] && kill "$api" 2>/dev/null && wait "$api" 2>/dev/null || true
    [[ -n $api ]] && echo "  api client: $(tail -1 "$WORK/api-$n.txt")"
    kill "$gate" "$refl" 2>/dev/null || true
    wait "$gate" "$refl" 2>/dev/null || true
    PIDS=()
}

# The gate's CPU seconds (user + system) from /proc.
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

# The API's own cost, without the benchmark's noise: an idle gate's CPU
# over the window, with and without the API client.
idle_cost() {
    local base=28090
    "${PIN_GATE[@]}" $BIN/selgate run --listen 127.0.0.1:$((base + 3)) \
        --upstream 127.0.0.1:$((base + 2)) --admin 127.0.0.1:$((base + 4)) \
        --status-interval 0 >"$WORK/idle-gate.log" 2>&1 &
    local gate=$!
    PIDS+=("$gate")
    wait_port $((base + 4))
    sleep 1
    local a b c
    a=$(cpu_of "$gate")
    sleep "$DURATION"
    b=$(cpu_of "$gate")
    "${PIN_LOAD[@]}" python3 tests/admin-bench/api-client.py 127.0.0.1:$((base + 4)) "$RATE" \
        "$DURATION" >"$WORK/api-idle.txt" 2>&1
    c=$(cpu_of "$gate")
    kill "$gate" 2>/dev/null || true
    wait "$gate" 2>/dev/null || true
    PIDS=()
    local calls
    calls=$(tail -1 "$WORK/api-idle.txt"); grep -m1 "first" "$WORK/api-idle.txt" && tail -5 "$WORK/idle-gate.log" || true
    python3 - "$a" "$b" "$c" "$DURATION" "$RATE" "$calls" <<'PY' | tee "$WORK/idle-cost.txt"
import sys
a, b, c, d, rate = (float(x) for x in sys.argv[1:6])
idle, busy = b - a, c - b
print(f"idle gate: {idle / d * 1e3:.1f} ms CPU per s quiet, {busy / d * 1e3:.1f} ms with {rate:.0f} API calls/s ({sys.argv[6]})")
print(f"API cost: {(busy - idle) / (d * rate) * 1e6:.0f} µs of gate CPU per call")
PY
}
idle_cost

for n in $(seq 1 "$RUNS"); do
    run_once quiet "$n"
    run_once busy "$n"
done
python3 - "$WORK/results.txt" <<'PY'
import sys, statistics
runs = {}
label = None
for line in open(sys.argv[1]):
    k, _, v = line.strip().partition(" ")
    if k == "run":
        label = v
    elif k in ("gate_cpu_us_per_rt", "throughput") and label:
        runs.setdefault(label, {})[k] = float(v)
def col(mode, k):
    return [r[k] for l, r in sorted(runs.items()) if l.startswith(mode + "/") and k in r]
q, b = col("quiet", "gate_cpu_us_per_rt"), col("busy", "gate_cpu_us_per_rt")
qt, bt = col("quiet", "throughput"), col("busy", "throughput")
print("run   gate CPU µs/round trip   round trips/s")
for i, (a, c) in enumerate(zip(q, b)):
    print(f"{i+1}     quiet {a:.2f}  busy {c:.2f}   quiet {qt[i]:.0f}  busy {bt[i]:.0f}")
mq, mb = statistics.median(q), statistics.median(b)
print(f"median: quiet {mq:.2f} µs, busy {mb:.2f} µs, ratio busy/quiet {mb/mq:.3f}")
PY
cat "$WORK/idle-cost.txt"
