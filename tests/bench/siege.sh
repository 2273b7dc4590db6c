#!/usr/bin/env bash
# The siege benchmark (issue 12): every attack beside a steady stream of
# players, against the gate of a base revision ("before") and the gate of
# this working tree ("after"), interleaved, in one run.
#
#   bash tests/bench/siege.sh                 # the full run (about 8 minutes after the builds)
#   bash tests/bench/siege.sh --duration 10   # the same with a shorter window per attack
#   bash tests/bench/siege.sh --smoke         # tiny, this tree's gate only, no figures (CI)
#
# For each attack and each gate: a fresh reference DBServer (`selgate
# refdb`, refusing the attackers' accounts) and a fresh gate
#   selgate run --listen 127.0.0.1:P --upstream 127.0.0.1:D
#               --metrics 127.0.0.1:M --max-sessions 2000
# (every other setting at its default: both gates get only flags the base
# knows), then `siege run`, which attacks, sends players and reads the
# gate's CPU time and closes over the window. The gate runs alone on core
# 0; the siege load and the DBServer share core 1. The IPv6 spray routes
# fd00:5e1::/64 to lo and puts fd00:5e1::1 on lo for the gate's second
# listener, and takes both away afterwards.
#
# The full run writes tests/bench/siege-results.txt and the part of
# BENCHMARKS.md between <!-- siege:begin --> and <!-- siege:end -->.
#
# Settings (environment): BASE_REV (7baf94b, the last commit before the
# attack work), SIEGE_DURATION (window, 20 s; --duration), SIEGE_WARMUP
# (3 s), SIEGE_ATTACKS (all: "none silent slowloris junk churn framed-idle
# address-spray ipv6-spray"), SIEGE_PORT_BASE (28100).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

SMOKE=0
DURATION=${SIEGE_DURATION:-}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --duration)
            DURATION=${2:?--duration needs seconds}
            shift
            ;;
        -h | --help)
            sed -n '2,30p' "$0"
            exit 0
            ;;
        *)
            echo "siege.sh: unknown argument $1 (try --smoke or --duration SECS)" >&2
            exit 2
            ;;
    esac
    shift
done

ALL_ATTACKS="none silent slowloris junk churn framed-idle address-spray ipv6-spray"
ATTACKS=${SIEGE_ATTACKS:-$ALL_ATTACKS}
BASE_REV=${BASE_REV:-7baf94b}
if [[ $SMOKE == 1 ]]; then
    DURATION=${DURATION:-3}
    WARMUP=${SIEGE_WARMUP:-1}
    ATTACKERS=300
    MAX_SESSIONS=200
    SPRAY=(--spray-addresses 5000 --spray-secs 2 --spray-inflight 300)
    GATES="new"
    PROFILE=debug
else
    DURATION=${DURATION:-20}
    WARMUP=${SIEGE_WARMUP:-3}
    ATTACKERS=3000 # 1.5 x max_sessions
    MAX_SESSIONS=2000
    SPRAY=(--spray-addresses 200000 --spray-secs 10 --spray-inflight 2000)
    GATES="base new"
    PROFILE=release
fi
PLAYER_RATE=20
PLAYER_TIMEOUT=2
PORT_BASE=${SIEGE_PORT_BASE:-28100}
GATE_PORT=$((PORT_BASE + 1))
DB=127.0.0.1:$((PORT_BASE + 2))
METRICS_PORT=$((PORT_BASE + 9))
GATE=127.0.0.1:$GATE_PORT
METRICS=127.0.0.1:$METRICS_PORT
PREFIX6=fd00:5e1::
GATE6_IP=fd00:5e1::1
GATE6="[$GATE6_IP]:$GATE_PORT"

log() { printf '[siege %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# The attackers hold thousands of sockets (the hard limit here is 20,000).
ulimit -n "$(ulimit -Hn)"

if command -v taskset >/dev/null 2>&1 && [[ $(nproc) -ge 2 ]]; then
    PIN_GATE=(taskset -c 0)
    PIN_LOAD=(taskset -c 1)
else
    log "no taskset or fewer than 2 cores: running unpinned"
    PIN_GATE=()
    PIN_LOAD=()
fi

# ---- builds -----------------------------------------------------------------

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ $PROFILE == release ]]; then
    log "building this tree (release)"
    cargo build --release -q -p selgate -p selgate-bench
else
    log "building this tree (debug)"
    cargo build -q -p selgate -p selgate-bench
fi
NEW_BIN=$TARGET_DIR/$PROFILE/selgate
SIEGE=$TARGET_DIR/$PROFILE/siege

BASE_BIN=
if [[ $GATES == *base* ]]; then
    BASE_HASH=$(git rev-parse --verify "$BASE_REV^{commit}")
    # One target directory for every base revision (dependencies are built
    # once), one cached binary per revision: a second run builds nothing.
    BASE_TARGET=$ROOT/target/siege-base
    BASE_BIN=$BASE_TARGET/bin/selgate-$BASE_HASH
    if [[ ! -x $BASE_BIN ]]; then
        log "building the base gate $BASE_REV ($BASE_HASH) in a worktree (release)"
        TREE=$(mktemp -d "${TMPDIR:-/tmp}/selgate-siege-base.XXXXXX")
        git worktree add -q --detach "$TREE/src" "$BASE_HASH"
        (cd "$TREE/src" && CARGO_TARGET_DIR=$BASE_TARGET cargo build --release -q -p selgate)
        mkdir -p "$BASE_TARGET/bin"
        cp "$BASE_TARGET/release/selgate" "$BASE_BIN.tmp" && mv "$BASE_BIN.tmp" "$BASE_BIN"
        git worktree remove --force "$TREE/src"
        rm -rf "$TREE"
    else
        log "base gate $BASE_REV: cached $BASE_BIN"
    fi
fi

# ---- processes --------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/selgate-siege.XXXXXX")
RESULTS=$WORK/siege-results.txt
PIDS=()
ROUTE_ADDED=0
ADDR_ADDED=0

remove_ipv6() {
    if [[ $ADDR_ADDED == 1 ]]; then
        ip -6 addr del "$GATE6_IP/128" dev lo 2>/dev/null || true
        ADDR_ADDED=0
    fi
    if [[ $ROUTE_ADDED == 1 ]]; then
        ip -6 route del local "$PREFIX6/64" dev lo 2>/dev/null || true
        ROUTE_ADDED=0
    fi
}

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    remove_ipv6
    if [[ $SMOKE == 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Routes the prefix to lo (idempotent: an existing route is left alone and
# left in place) and gives the gate its address in it; false when the
# machine does not let us.
add_ipv6() {
    if ! ip -6 route show table local | grep -q "^local $PREFIX6/64 "; then
        ip -6 route add local "$PREFIX6/64" dev lo 2>/dev/null || return 1
        ROUTE_ADDED=1
    fi
    if ! ip -6 addr show dev lo | grep -q "inet6 $GATE6_IP/128"; then
        ip -6 addr add "$GATE6_IP/128" dev lo nodad 2>/dev/null || return 1
        ADDR_ADDED=1
    fi
}

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

# Waits until the gate's DBServer link is up (selgate_upstream_state 2), so
# that no player is refused for a link still connecting.
wait_link_up() {
    for _ in $(seq 100); do
        local page
        page=$( (exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT" &&
            printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3) 2>/dev/null || true)
        if grep -q '^selgate_upstream_state{[^}]*} 2' <<<"$page"; then return 0; fi
        sleep 0.1
    done
    log "the gate's DBServer link did not come up"
    return 1
}

# Stops one process we started: SIGTERM, a second one (the gate then exits
# at once instead of draining), SIGKILL after 5 s.
stop_pid() {
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    sleep 0.2
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

show_logs() {
    for f in "$WORK"/*.log; do
        echo "--- $(basename "$f")" >&2
        tail -n 8 "$f" >&2
    done
}

# ---- the run ----------------------------------------------------------------

NEW_REV=$(git rev-parse --short HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
    NEW_REV="$NEW_REV + uncommitted changes"
fi
{
    echo "# siege results: raw records of tests/bench/siege.sh (see BENCHMARKS.md)"
    echo "meta date $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "meta base_rev ${BASE_REV}"
    echo "meta new_rev $NEW_REV"
    echo "meta nproc $(nproc)"
    echo "meta cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "meta kernel $(uname -r)"
    echo "meta load_before $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "meta duration $DURATION"
    echo "meta warmup $WARMUP"
    echo "meta attackers $ATTACKERS"
    echo "meta max_sessions $MAX_SESSIONS"
    echo "meta player_rate $PLAYER_RATE"
    echo "meta player_timeout $PLAYER_TIMEOUT"
} >"$RESULTS"

START=$(date +%s)
RUN=0
HEADER=()
for attack in $ATTACKS; do
    listen6=()
    target6=()
    if [[ $attack == ipv6-spray ]]; then
        if ! add_ipv6; then
            log "ipv6-spray skipped: cannot route $PREFIX6/64 to lo (needs root)"
            remove_ipv6
            continue
        fi
        listen6=(--listen "$GATE6")
        target6=(--target6 "$GATE6")
    fi
    for gate in $GATES; do
        bin=$NEW_BIN
        [[ $gate == base ]] && bin=$BASE_BIN
        "${PIN_LOAD[@]}" "$NEW_BIN" refdb --listen "$DB" --refuse-accounts-with-prefix siege \
            >"$WORK/refdb-$gate-$attack.log" 2>&1 &
        db_pid=$!
        PIDS+=("$db_pid")
        wait_port "$DB"
        "${PIN_GATE[@]}" "$bin" run --listen "$GATE" "${listen6[@]}" --upstream "$DB" \
            --metrics "$METRICS" --max-sessions "$MAX_SESSIONS" \
            >"$WORK/gate-$gate-$attack.log" 2>&1 &
        gate_pid=$!
        PIDS+=("$gate_pid")
        if ! wait_port "$GATE" || ! wait_link_up; then
            show_logs
            exit 1
        fi
        warm="${WARMUP}s warm-up, "
        [[ $attack == none || $attack == address-spray ]] && warm=""
        log "$attack against $gate: ${warm}${DURATION}s window"
        "${PIN_LOAD[@]}" "$SIEGE" run --target "$GATE" "${target6[@]}" --prefix6 "$PREFIX6" \
            --attack "$attack" --attackers "$ATTACKERS" --duration "$DURATION" \
            --warmup "$WARMUP" --player-rate "$PLAYER_RATE" --player-timeout "$PLAYER_TIMEOUT" \
            --player-offset $((RUN * 1500)) "${SPRAY[@]}" --account-prefix siege \
            --gate-pid "$gate_pid" --gate-metrics "$METRICS" --gate-name "$gate" \
            --max-sessions "$MAX_SESSIONS" --out "$RESULTS" "${HEADER[@]}" \
            2>"$WORK/siege-$gate-$attack.log" || {
            log "FAILED: $attack against $gate"
            show_logs
            exit 1
        }
        HEADER=(--no-header)
        RUN=$((RUN + 1))
        stop_pid "$gate_pid"
        stop_pid "$db_pid"
        PIDS=()
    done
    [[ $attack == ipv6-spray ]] && remove_ipv6
done
echo "meta load_after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"
log "$RUN runs took $(($(date +%s) - START)) s"

if [[ $SMOKE == 1 ]]; then
    # Every run above failed the script unless the tool worked: players
    # were served without an attack, and every attack connected.
    log "smoke: $RUN runs: OK"
    exit 0
fi

cp "$RESULTS" tests/bench/siege-results.txt
"$SIEGE" report --results tests/bench/siege-results.txt --markdown BENCHMARKS.md \
    --before base --after new >/dev/null
log "wrote tests/bench/siege-results.txt and the siege section of BENCHMARKS.md"
