# Sourced by callgrind.sh and callgrind-sessions.sh: counts the instructions
# one of the benchmark crate's callgrind drivers spends inside the gate's
# entry points (Gate::handle, Gate::poll_action and everything they call;
# the harness's contract checks are not the core's work) for N and 2N units
# of work, and sets ONE, TWO and PER = (TWO - ONE) / N, which cancels the
# set-up cost. Needs valgrind and a release build of the driver.
#
#   core_instructions BIN N ARG
core_instructions() {
    local bin=$1 n=$2 arg=$3
    [[ -x $bin ]] || cargo build --release -q -p selgate-bench
    ONE=$(callgrind_collected "$bin" "$n" "$arg")
    TWO=$(callgrind_collected "$bin" $((2 * n)) "$arg")
    PER=$(((TWO - ONE) / n))
}

callgrind_collected() {
    local out
    out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        '--toggle-collect=selgate_core::gate::Gate::handle' \
        '--toggle-collect=selgate_core::gate::Gate::poll_action' \
        "$1" "$2" "$3" 2>&1 >/dev/null)
    # "==123== Collected : 123456789"
    grep -m1 'Collected' <<<"$out" | awk '{print $NF}'
}
