#!/usr/bin/env bash
# Instructions per session through the gate core under callgrind: runs N
# and 2N short sessions (accept from a fresh address, one CM_QUERYCHR, its
# DBServer reply, the client's close) through a Gate and divides the
# difference by N, which cancels the set-up cost. As in callgrind.sh, only
# instructions inside the gate's entry points (Gate::handle,
# Gate::poll_action, everything they call) are counted: the harness's
# contract checks are not the core's work.
#
#   bash tests/bench/callgrind-sessions.sh [N] [AT_ONCE]
#
# Needs valgrind (apt-get install -y valgrind) and a release build of
# gate-sessions (cargo build --release -p selgate-bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-50000}
AT_ONCE=${2:-64}
BIN=${CARGO_TARGET_DIR:-target}/release/gate-sessions
. tests/bench/callgrind-core.sh
core_instructions "$BIN" "$N" "$AT_ONCE"
one=$ONE two=$TWO per=$PER
echo "sessions $N"
echo "at_once $AT_ONCE"
echo "instructions_n $one"
echo "instructions_2n $two"
echo "instructions_per_session $per"
echo "command valgrind --tool=callgrind --toggle-collect=Gate::handle,poll_action gate-sessions $N $AT_ONCE (and $((2 * N)))"
