#!/usr/bin/env bash
# Instructions per frame through the gate core under callgrind: pushes N
# and 2N round trips (a client frame up, its DBServer reply down) through a
# Gate and divides the difference by N, which cancels the set-up cost.
# gate-frames drives the gate through the harness's Wire, whose contract
# checks are not the core's work: only instructions inside the gate's entry
# points (Gate::handle, Gate::poll_action, everything they call) are
# counted.
#
#   bash tests/bench/callgrind.sh [N] [SESSIONS]
#
# Needs valgrind (apt-get install -y valgrind) and a release build of
# gate-frames (cargo build --release -p selgate-bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
SESSIONS=${2:-1000}
BIN=${CARGO_TARGET_DIR:-target}/release/gate-frames
. tests/bench/callgrind-core.sh
core_instructions "$BIN" "$N" "$SESSIONS"
one=$ONE two=$TWO per=$PER
echo "frames $N"
echo "sessions $SESSIONS"
echo "instructions_n $one"
echo "instructions_2n $two"
echo "instructions_per_frame $per"
echo "command valgrind --tool=callgrind --toggle-collect=Gate::handle,poll_action gate-frames $N $SESSIONS (and $((2 * N)))"
