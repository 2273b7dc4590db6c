#!/usr/bin/env bash
# Benchmarks selgate against HAProxy (TCP mode) and a direct connection,
# with the same load, in one run, and regenerates BENCHMARKS.md and the
# figures in tests/bench/figures/.
#
#   bash tests/bench/run.sh            # the full run (about 5 minutes after the build)
#   bash tests/bench/run.sh --churn    # the reconnect storm only (about 6 minutes after the build)
#   bash tests/bench/run.sh --smoke    # every path once with a tiny load, churn included (CI)
#
# Three paths, each with the same load generator and the same reflector
# (the `load` and `reflector` binaries of selgate-bench, tests/bench/src):
#   direct   load -> reflector (client face)
#   haproxy  load -> HAProxy -> reflector (client face)
#   selgate  load -> selgate -> reflector (DBServer face)
# The gate or proxy runs alone on core 0; the load generator and the
# reflector share core 1. Each gate, proxy and reflector is a process of
# its own, restarted for every measurement, on 127.0.0.0/8 only.
#
# File descriptors: a process may hold at most 20,000 here. At 5,000
# sessions HAProxy holds 10,000 (two per session), the load generator and
# the reflector 5,000 each, selgate 5,001.
#
# Churn (--churn): players under way at once, each from a fresh 127.x
# address, each running one CM_QUERYCHR (flow "query") or CM_QUERYCHR then
# CM_SELCHR (flow "select") and closing; the same three paths, selgate with
# its default per-IP limits (only --max-sessions raised). Then the same
# load under strace -c for syscalls per session, and callgrind for the
# core's instructions per session (callgrind-sessions.sh). It rewrites the
# part of BENCHMARKS.md between the churn markers, figures/churn_*.svg and
# tests/bench/churn/.
#
# Settings (environment): BENCH_SESSIONS ("100 1000 5000"), BENCH_DURATION
# (10 s window), BENCH_WARMUP (2 s), BENCH_RATE (open-loop frames/s,
# 20000), BENCH_PAYLOAD (body bytes, 24), BENCH_IDLE_SESSIONS (5000),
# BENCH_PORT_BASE (27100); for churn BENCH_CHURN_PLAYERS ("50 500 2000"),
# BENCH_CHURN_FLOWS ("query select"), BENCH_CHURN_DURATION (10 s window),
# BENCH_CHURN_WARMUP (2 s), BENCH_CHURN_STRACE_PLAYERS (500).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

SMOKE=0
CHURN_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        --churn) CHURN_ONLY=1 ;;
        -h | --help)
            sed -n '2,37p' "$0"
            exit 0
            ;;
        *)
            echo "run.sh: unknown argument $arg (try --smoke or --churn)" >&2
            exit 2
            ;;
    esac
done

if [[ $SMOKE == 1 ]]; then
    SESSIONS=${BENCH_SESSIONS:-20}
    DURATION=${BENCH_DURATION:-0.5}
    WARMUP=${BENCH_WARMUP:-0.2}
    RATE=${BENCH_RATE:-2000}
    IDLE_SESSIONS=${BENCH_IDLE_SESSIONS:-50}
    CHURN_PLAYERS=${BENCH_CHURN_PLAYERS:-20}
    CHURN_DURATION=${BENCH_CHURN_DURATION:-0.5}
    CHURN_WARMUP=${BENCH_CHURN_WARMUP:-0.2}
    PROFILE=debug
else
    SESSIONS=${BENCH_SESSIONS:-100 1000 5000}
    DURATION=${BENCH_DURATION:-10}
    WARMUP=${BENCH_WARMUP:-2}
    RATE=${BENCH_RATE:-20000}
    IDLE_SESSIONS=${BENCH_IDLE_SESSIONS:-5000}
    CHURN_PLAYERS=${BENCH_CHURN_PLAYERS:-50 500 2000}
    CHURN_DURATION=${BENCH_CHURN_DURATION:-10}
    CHURN_WARMUP=${BENCH_CHURN_WARMUP:-2}
    PROFILE=release
fi
CHURN_FLOWS=${BENCH_CHURN_FLOWS:-query select}
CHURN_STRACE_PLAYERS=${BENCH_CHURN_STRACE_PLAYERS:-500}
PAYLOAD=${BENCH_PAYLOAD:-24}
PORT_BASE=${BENCH_PORT_BASE:-27100}
REFL_CLIENT=127.0.0.1:$((PORT_BASE + 1))
REFL_DB=127.0.0.1:$((PORT_BASE + 2))
PROXY=127.0.0.1:$((PORT_BASE + 3))
GATE=127.0.0.1:$((PORT_BASE + 4))
METRICS=127.0.0.1:$((PORT_BASE + 9))

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- tools ----------------------------------------------------------------

if ! command -v haproxy >/dev/null 2>&1; then
    log "installing haproxy from Debian"
    apt-get update -q >/dev/null && apt-get install -y -q haproxy >/dev/null
fi
if ! command -v taskset >/dev/null 2>&1; then
    apt-get update -q >/dev/null && apt-get install -y -q util-linux >/dev/null
fi
CORES=$(nproc)
if [[ $CORES -ge 2 ]]; then
    PIN_GATE=(taskset -c 0)
    PIN_LOAD=(taskset -c 1)
else
    log "only $CORES core: running unpinned"
    PIN_GATE=()
    PIN_LOAD=()
fi

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ $PROFILE == release ]]; then
    log "building (release)"
    cargo build --release -q -p selgate -p selgate-bench
else
    log "building (debug)"
    cargo build -q -p selgate -p selgate-bench
fi
BIN=$TARGET_DIR/$PROFILE/selgate
LOAD=$TARGET_DIR/$PROFILE/load
REFLECTOR=$TARGET_DIR/$PROFILE/reflector

WORK=$(mktemp -d "${TMPDIR:-/tmp}/selgate-bench.XXXXXX")
RESULTS=$WORK/results.txt
: >"$RESULTS"
CHURN_RESULTS=$WORK/churn-results.txt
: >"$CHURN_RESULTS"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ $SMOKE == 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---- processes --------------------------------------------------------------

# Waits until something accepts on HOST:PORT.
wait_port() {
    local host=${1%:*} port=${1##*:}
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "nothing listens on $1"
    return 1
}

# Stops one process we started: SIGTERM, then SIGKILL after 5 s.
stop_pid() {
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

REFL_PID=
GATE_PID=
# Starts the processes of path $1 (with $2 = churn: selgate with its
# default per-IP limits); sets TARGET, REFL_PID, GATE_PID.
start_path() {
    local path=$1 kind=${2:-}
    "${PIN_LOAD[@]}" "$REFLECTOR" --client-listen "$REFL_CLIENT" --db-listen "$REFL_DB" \
        --max-secs 900 >"$WORK/reflector.log" 2>&1 &
    REFL_PID=$!
    PIDS+=("$REFL_PID")
    wait_port "$REFL_CLIENT"
    GATE_PID=
    case "$path" in
        direct) TARGET=$REFL_CLIENT ;;
        haproxy)
            sed -e "s/@LISTEN@/$PROXY/" -e "s/@REFLECTOR@/$REFL_CLIENT/" \
                tests/bench/haproxy.cfg >"$WORK/haproxy.cfg"
            "${PIN_GATE[@]}" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
            GATE_PID=$!
            PIDS+=("$GATE_PID")
            wait_port "$PROXY"
            TARGET=$PROXY
            ;;
        selgate)
            if [[ $kind == churn ]]; then
                # Every player has an address of its own and sends what a
                # player sends: the per-IP limits stay at their defaults.
                "${PIN_GATE[@]}" "$BIN" run --listen "$GATE" --upstream "$REFL_DB" \
                    --metrics "$METRICS" --status-interval 0 --drain-timeout 1s \
                    --max-sessions 10000 >"$WORK/selgate.log" 2>&1 &
                GATE_PID=$!
                PIDS+=("$GATE_PID")
                TARGET=$GATE
                return
            fi
            # Limits raised for a load test: every session sends far more
            # than a player, and the sessions come back run after run.
            "${PIN_GATE[@]}" "$BIN" run --listen "$GATE" --upstream "$REFL_DB" \
                --metrics "$METRICS" --status-interval 0 --drain-timeout 1s \
                --max-sessions 10000 --max-sessions-per-ip 100 \
                --max-connects-per-ip-1s 100000 --max-connects-per-ip-10s 100000 \
                --max-frames-per-sec 1000000 --idle-timeout 1h --first-frame-timeout 1h \
                --reconnect-min 100ms >"$WORK/selgate.log" 2>&1 &
            GATE_PID=$!
            PIDS+=("$GATE_PID")
            TARGET=$GATE
            ;;
    esac
}

stop_path() {
    [[ -n $GATE_PID ]] && stop_pid "$GATE_PID"
    stop_pid "$REFL_PID"
    PIDS=()
}

# Runs the load generator against the current path.
load() {
    local path=$1 n=$2 mode=$3
    local extra=()
    [[ -n $GATE_PID ]] && extra+=(--gate-pid "$GATE_PID")
    [[ $path == selgate ]] && extra+=(--gate-metrics "$METRICS")
    log "$path: $n sessions, $mode"
    "${PIN_LOAD[@]}" "$LOAD" --target "$TARGET" --sessions "$n" --mode "$mode" \
        --rate "$RATE" --payload "$PAYLOAD" --duration "$DURATION" --warmup "$WARMUP" \
        --reflector-pid "$REFL_PID" --label "$path/$n/$mode" --out "$RESULTS" \
        --connect-timeout 60 "${extra[@]}" >>"$WORK/load.log" 2>&1 || {
        log "FAILED: $path with $n sessions ($mode); the last lines of its output:"
        tail -n 8 "$WORK/load.log" >&2
        for f in "$WORK"/*.log; do
            [[ $f == "$WORK/load.log" ]] && continue
            echo "--- $(basename "$f")" >&2
            tail -n 5 "$f" >&2
        done
        exit 1
    }
}

# Runs the churn load against the current path: $2 players at once, flow
# $3, appending to file $4 (default the churn results), window $5 (default
# CHURN_DURATION) after warm-up $6 (default CHURN_WARMUP).
churn() {
    local path=$1 n=$2 flow=$3 out=${4:-$CHURN_RESULTS}
    local window=${5:-$CHURN_DURATION} warm=${6:-$CHURN_WARMUP}
    local extra=()
    [[ -n $GATE_PID ]] && extra+=(--gate-pid "$GATE_PID")
    [[ $path == selgate ]] && extra+=(--gate-metrics "$METRICS")
    log "$path: churn, $n players at once, $flow flow"
    "${PIN_LOAD[@]}" "$LOAD" --target "$TARGET" --mode churn --sessions "$n" --flow "$flow" \
        --payload "$PAYLOAD" --duration "$window" --warmup "$warm" \
        --reflector-pid "$REFL_PID" --label "$path/$n/churn-$flow" --out "$out" \
        "${extra[@]}" >>"$WORK/load.log" 2>&1 || {
        log "FAILED: $path churn with $n players ($flow); the last lines of its output:"
        tail -n 8 "$WORK/load.log" >&2
        for f in "$WORK"/*.log; do
            [[ $f == "$WORK/load.log" ]] && continue
            echo "--- $(basename "$f")" >&2
            tail -n 5 "$f" >&2
        done
        exit 1
    }
}

# The churn comparison: every path, every flow, every player count.
churn_runs() {
    for n in $CHURN_PLAYERS; do
        for flow in $CHURN_FLOWS; do
            for path in direct haproxy selgate; do
                start_path "$path" churn
                churn "$path" "$n" "$flow"
                stop_path
            done
        done
    done
}

# ---- the run ---------------------------------------------------------------

{
    echo "date $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "nproc $CORES"
    echo "cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel $(uname -r)"
    echo "haproxy $(haproxy -v 2>/dev/null | head -n1 | awk '{print $3}')"
    echo "load_before $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "duration $DURATION"
    echo "warmup $WARMUP"
    echo "rate $RATE"
    echo "payload $PAYLOAD"
    echo "idle_sessions $IDLE_SESSIONS"
    echo "churn_duration $CHURN_DURATION"
    echo "churn_warmup $CHURN_WARMUP"
    echo "rustc $(rustc --version | awk '{print $2}')"
} >"$WORK/machine.txt"

START=$(date +%s)
if [[ $CHURN_ONLY == 1 && $SMOKE == 0 ]]; then
    churn_runs
    echo "load_after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/machine.txt"
    log "churn runs took $(($(date +%s) - START)) s"
    CHURN_DIR=$WORK/churn
    mkdir -p "$CHURN_DIR/strace"
    cp "$CHURN_RESULTS" "$CHURN_DIR/results.txt"
    cp "$WORK/machine.txt" "$CHURN_DIR/machine.txt"
    # Syscalls per session (strace -c -f), apart from the timed runs: no
    # warm-up, so the sessions of the record are the sessions the trace
    # saw, give or take the players in flight at its end.
    : >"$CHURN_DIR/strace/records.txt"
    if command -v strace >/dev/null 2>&1 || apt-get install -y -q strace >/dev/null 2>&1; then
        for path in haproxy selgate; do
            start_path "$path" churn
            strace -c -f -o "$CHURN_DIR/strace/$path.txt" -p "$GATE_PID" 2>/dev/null &
            STRACE_PID=$!
            sleep 0.5
            churn "$path" "$CHURN_STRACE_PLAYERS" query "$CHURN_DIR/strace/records.txt" 3 0
            kill -INT "$STRACE_PID" 2>/dev/null || true
            wait "$STRACE_PID" 2>/dev/null || true
            stop_path
        done
    else
        log "strace unavailable: no syscalls-per-session figure"
    fi
    if command -v valgrind >/dev/null 2>&1 || apt-get install -y -q valgrind >/dev/null 2>&1; then
        bash tests/bench/callgrind-sessions.sh >"$CHURN_DIR/callgrind.txt"
    else
        log "valgrind unavailable: no instructions-per-session figure"
        : >"$CHURN_DIR/callgrind.txt"
    fi
    rm -rf tests/bench/churn
    cp -r "$CHURN_DIR" tests/bench/churn
    "$TARGET_DIR/release/bench-report" churn --dir tests/bench/churn \
        --figures tests/bench/figures --markdown BENCHMARKS.md
    log "wrote the churn section of BENCHMARKS.md, tests/bench/figures/churn_*.svg and tests/bench/churn/"
    exit 0
fi
for n in $SESSIONS; do
    for path in direct haproxy selgate; do
        start_path "$path"
        load "$path" "$n" closed
        load "$path" "$n" open
        stop_path
    done
done
for path in haproxy selgate; do
    start_path "$path"
    load "$path" "$IDLE_SESSIONS" idle
    stop_path
done
echo "load_after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/machine.txt"
log "load runs took $(($(date +%s) - START)) s"

if [[ $SMOKE == 1 ]]; then
    churn_runs
    # Every run above already failed the script unless it measured round
    # trips (or sessions) with correct replies and no lost session.
    runs=$(grep -c '^run ' "$RESULTS")
    churns=$(grep -c '^run ' "$CHURN_RESULTS")
    log "smoke: $runs round-trip runs and $churns churn runs over direct, HAProxy and selgate: OK"
    exit 0
fi

# Syscalls per round trip (strace -c), apart from the timed runs because
# tracing slows the traced process down. No warm-up, so the round trips of
# the run are the round trips the trace saw (give or take the sessions'
# last in-flight requests and closes). Closed loop only: there each session
# has one frame in flight, so the count is structural; in an open loop the
# tracer's slowdown lets frames pile up and batch, which would flatter it.
mkdir -p "$WORK/strace"
: >"$WORK/strace/records.txt"
if command -v strace >/dev/null 2>&1 || apt-get install -y -q strace >/dev/null 2>&1; then
    for path in haproxy selgate; do
        for mode in closed; do
            start_path "$path"
            strace -c -f -o "$WORK/strace/$path-$mode.txt" -p "$GATE_PID" 2>/dev/null &
            STRACE_PID=$!
            sleep 0.5
            log "$path: 1000 sessions, $mode, under strace -c"
            extra=()
            [[ $path == selgate ]] && extra+=(--gate-metrics "$METRICS")
            "${PIN_LOAD[@]}" "$LOAD" --target "$TARGET" --sessions 1000 --mode "$mode" \
                --rate "$RATE" --payload "$PAYLOAD" --duration 3 --warmup 0 "${extra[@]}" \
                --label "$path/1000/$mode" --out "$WORK/strace/records.txt" \
                >>"$WORK/load.log" 2>&1 || log "strace run $path $mode failed (ignored)"
            kill -INT "$STRACE_PID" 2>/dev/null || true
            wait "$STRACE_PID" 2>/dev/null || true
            stop_path
        done
    done
else
    log "strace unavailable: no syscalls-per-round-trip figure"
fi

if command -v valgrind >/dev/null 2>&1 || apt-get install -y -q valgrind >/dev/null 2>&1; then
    bash tests/bench/callgrind.sh >"$WORK/callgrind.txt"
else
    log "valgrind unavailable: no instructions-per-frame figure"
    : >"$WORK/callgrind.txt"
fi

rm -rf tests/bench/strace
cp -r "$WORK/strace" tests/bench/strace
cp "$RESULTS" tests/bench/results.txt
cp "$WORK/machine.txt" tests/bench/machine.txt
cp "$WORK/callgrind.txt" tests/bench/callgrind.txt
"$TARGET_DIR/release/bench-report" --results tests/bench/results.txt \
    --machine tests/bench/machine.txt --callgrind tests/bench/callgrind.txt \
    --strace tests/bench/strace \
    --figures tests/bench/figures --markdown BENCHMARKS.md
log "wrote BENCHMARKS.md and tests/bench/figures/ (raw figures in tests/bench/results.txt)"
