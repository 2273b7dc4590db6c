#!/usr/bin/env bash
# What traffic recording costs, measured as selgate's CPU time per round
# trip (utime + stime from /proc) under the same closed-loop load, three
# ways, interleaved so that machine noise hits all of them alike:
#   off      no record list: the recorder does not exist
#   nomatch  a record list that names no live session (10.0.0.0/8)
#   all      a record list that names every session (127.0.0.0/8)
#
#   bash tests/bench/recording-overhead.sh            # 5 rounds, 100 sessions, 5 s windows
#   ROUNDS=2 DURATION=2 bash tests/bench/recording-overhead.sh
#
# The gate runs on core 0, the load generator and the reflector on core 1.
# Loopback only; every process is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
SESSIONS=${SESSIONS:-100}
PORT=${PORT:-28100}
cargo build --release -q -p selgate -p selgate-bench
BIN=${CARGO_TARGET_DIR:-target}/release/selgate
LOAD=${CARGO_TARGET_DIR:-target}/release/load
REFLECTOR=${CARGO_TARGET_DIR:-target}/release/reflector
PIN_GATE=(); PIN_LOAD=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_GATE=(taskset -c 0); PIN_LOAD=(taskset -c 1)
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/selgate-rec.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
printf '10.0.0.0/8\n' >"$WORK/nomatch.txt"
printf '127.0.0.0/8\n' >"$WORK/all.txt"

"${PIN_LOAD[@]}" "$REFLECTOR" --db-listen "127.0.0.1:$((PORT + 1))" --max-secs 3600 \
  >"$WORK/reflector.log" 2>&1 &
PIDS+=($!)
sleep 0.3

for round in $(seq 1 "$ROUNDS"); do
  for variant in off nomatch all; do
    extra=()
    case $variant in
      nomatch) extra=(--record-list "$WORK/nomatch.txt" --record-dir "$WORK/rec-$variant") ;;
      all) extra=(--record-list "$WORK/all.txt" --record-dir "$WORK/rec-$variant" --record-max-files 2) ;;
    esac
    "${PIN_GATE[@]}" "$BIN" run --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$((PORT + 1))" \
      --status-interval 0 --max-sessions-per-ip 100 --max-connects-per-ip-1s 100000 \
      --max-connects-per-ip-10s 100000 --max-frames-per-sec 1000000 \
      --idle-timeout 1h --first-frame-timeout 1h "${extra[@]}" >"$WORK/gate.log" 2>&1 &
    gate=$!
    sleep 0.5
    "${PIN_LOAD[@]}" "$LOAD" --target "127.0.0.1:$PORT" --sessions "$SESSIONS" \
      --duration "$DURATION" --warmup 1 --gate-pid "$gate" --label "$variant" \
      --source-base 127.9.0.1 --out "$WORK/results.txt" >/dev/null 2>&1
    kill -TERM "$gate"; wait "$gate" 2>/dev/null || true
  done
done

echo "recording overhead: selgate CPU per round trip, $SESSIONS sessions, $ROUNDS rounds of ${DURATION}s"
python3 - "$WORK/results.txt" <<'PY'
import statistics, sys
runs, label = {}, None
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 2 and parts[0] == "run":
        label = parts[1]
    elif len(parts) == 2 and parts[0] == "gate_cpu_us_per_rt":
        runs.setdefault(label, []).append(float(parts[1]))
med = {k: statistics.median(v) for k, v in runs.items()}
for k in ("off", "nomatch", "all"):
    if k in runs:
        print(f"  {k:8} median {med[k]:.3f} us/rt  runs: {' '.join(f'{x:.3f}' for x in runs[k])}")
if med.get("off"):
    print(f"  nomatch/off = {med['nomatch'] / med['off']:.3f}   all/off = {med['all'] / med['off']:.3f}")
PY
