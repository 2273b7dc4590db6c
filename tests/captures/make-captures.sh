#!/usr/bin/env bash
# Makes the sample captures tests/captures/selgate-<dialect>.pcap: the real
# `selgate` binary between the reference DBServer and a few bots, all on
# loopback, under tcpdump. Run it as root (tcpdump needs it) from anywhere:
#
#   tests/captures/make-captures.sh [dialect...]     # default: all four
#
# Needs tcpdump (Debian: apt-get install -y tcpdump) and free ports 7100 and
# 5100 on 127.0.0.1. Each capture holds 6 sessions and stays well under
# 50 KB. The capture is stopped before the DBServer and the gate stop, so it
# ends with the link still up (a capture that goes on through the gate's
# stop replays too: see driver-sim/src/replay/stop.rs). Check the result
# with no flags (the dialect is read from the capture):
#
#   cargo run -p selgate-sim -- replay tests/captures/selgate-wemade.pcap
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dialects=("$@")
[ ${#dialects[@]} -gt 0 ] || dialects=(wemade delphi ndc kal)

command -v tcpdump >/dev/null || { echo "tcpdump is missing (apt-get install -y tcpdump)" >&2; exit 1; }

cd "$root"
cargo build -q -p selgate --bin selgate
cargo build -q -p selgate-tests --bin capture_peers
target="${CARGO_TARGET_DIR:-$root/target}"
selgate="$target/debug/selgate"
peers="$target/debug/capture_peers"

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Waits up to $2 seconds for file $1 to contain $3.
wait_for() {
    for _ in $(seq $(( $2 * 10 ))); do
        grep -q "$3" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$3' in $1:" >&2
    cat "$1" >&2 || true
    return 1
}

for d in "${dialects[@]}"; do
    out="$here/selgate-$d.pcap"
    echo "== $d -> $out"
    tcpdump -i lo -s 0 -U -w "$out" 'tcp port 7100 or tcp port 5100' 2>"$work/tcpdump.log" &
    tcpdump_pid=$!
    pids+=("$tcpdump_pid")
    wait_for "$work/tcpdump.log" 10 "listening on"

    "$peers" --dialect "$d" --db 127.0.0.1:5100 --gate 127.0.0.1:7100 \
        --bots 6 --concurrency 3 --seed 1 --hold-ms 5000 >"$work/peers.log" 2>&1 &
    peers_pid=$!
    pids+=("$peers_pid")
    wait_for "$work/peers.log" 10 "db listening"

    "$selgate" run --listen 127.0.0.1:7100 --upstream 127.0.0.1:5100 \
        --dialect "$d" --metrics off >"$work/selgate.log" 2>&1 &
    selgate_pid=$!
    pids+=("$selgate_pid")

    wait_for "$work/peers.log" 60 "bots done"
    cat "$work/peers.log"
    # Stop the capture while the link is still up (after a keepalive or
    # two), then the peers and the gate.
    sleep 3
    kill -INT "$tcpdump_pid"
    wait "$tcpdump_pid" || true
    if ! wait "$peers_pid"; then
        echo "the bots or the DBServer failed; see above" >&2
        exit 1
    fi
    kill -TERM "$selgate_pid"
    wait "$selgate_pid" || true
    pids=()
    ls -l "$out"
done
