#!/usr/bin/env bash
# Makes the sample captures tests/captures/selgate-<dialect>.pcap: the real
# `selgate` binary between the reference DBServer and a few bots, all on
# loopback, under tcpdump. Run it as root (tcpdump needs it) from anywhere:
#
#   tests/captures/make-captures.sh [dialect...]     # default: all four
#   ROLES=logingate tests/captures/make-captures.sh wemade
#
# ROLES (default: "selgate logingate") picks the samples. A logingate-<dialect>
# sample is the login zone of a gate with two zones (docs/PROTOCOL.md §11):
# the gate runs a logingate zone (7000, the reference LoginSrv on 5500) and a
# selgate zone (7100, the DBServer on 5100); players log in, pick the server
# and go with their certification to the selgate zone; tcpdump keeps the
# login zone's ports only. Replay it with the role's ports:
#
#   cargo run -p selgate-sim -- replay tests/captures/logingate-wemade.pcap --role logingate
#
# Needs tcpdump (Debian: apt-get install -y tcpdump) and free ports 7100,
# 5100, 7000 and 5500 on 127.0.0.1. Each capture holds 6 sessions and stays
# well under 50 KB. The capture is stopped before the DBServer and the gate stop, so it
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
read -r -a roles <<< "${ROLES:-selgate logingate}"

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

# Captures one sample: capture ROLE DIALECT.
capture() {
    local role="$1" d="$2"
    local out="$here/$role-$d.pcap" ports
    local peer_flags=() gate_flags=()
    case "$role" in
        selgate)
            ports='tcp port 7100 or tcp port 5100'
            gate_flags=(--listen 127.0.0.1:7100 --upstream 127.0.0.1:5100 --dialect "$d")
            ;;
        logingate)
            ports='tcp port 7000 or tcp port 5500'
            peer_flags=(--role logingate --login-srv 127.0.0.1:5500 --login-gate 127.0.0.1:7000)
            cat >"$work/zones.toml" <<EOF
[[zone]]
name = "login"
role = "logingate"
listen = "127.0.0.1:7000"
upstream = "127.0.0.1:5500"
dialect = "$d"

[[zone]]
name = "select"
listen = "127.0.0.1:7100"
upstream = "127.0.0.1:5100"
dialect = "$d"
EOF
            gate_flags=(--config "$work/zones.toml")
            ;;
        *)
            echo "unknown role $role (selgate or logingate)" >&2
            exit 2
            ;;
    esac
    echo "== $role $d -> $out"
    tcpdump -i lo -s 0 -U -w "$out" "$ports" 2>"$work/tcpdump.log" &
    tcpdump_pid=$!
    pids+=("$tcpdump_pid")
    wait_for "$work/tcpdump.log" 10 "listening on"

    "$peers" "${peer_flags[@]}" --dialect "$d" --db 127.0.0.1:5100 --gate 127.0.0.1:7100 \
        --bots 6 --concurrency 3 --seed 1 --hold-ms 5000 >"$work/peers.log" 2>&1 &
    peers_pid=$!
    pids+=("$peers_pid")
    wait_for "$work/peers.log" 10 "db listening"

    "$selgate" run "${gate_flags[@]}" --metrics off >"$work/selgate.log" 2>&1 &
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
        echo "the bots or the servers failed; see above; the gate's log:" >&2
        cat "$work/selgate.log" >&2 || true
        exit 1
    fi
    kill -TERM "$selgate_pid"
    wait "$selgate_pid" || true
    pids=()
    ls -l "$out"
}

for role in "${roles[@]}"; do
    for d in "${dialects[@]}"; do
        capture "$role" "$d"
    done
done
