#!/usr/bin/env bash
# Builds selgate.exe for x86_64-pc-windows-gnu and checks it under Wine:
#   1. `selgate.exe demo` (gate, reference DBServer and bots, all in Wine);
#   2. the end-to-end select flow with a Linux-side reference DBServer and
#      Linux-side bots against the Wine-hosted gate, on loopback.
# Installs what it needs (rustup target, mingw, wine) when missing.
# Everything stays on 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
target=x86_64-pc-windows-gnu

if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! command -v wine >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-mingw-w64-x86-64 wine64 >/dev/null
fi
wine_bin=$(command -v wine64 || command -v wine)

echo "== cross-building selgate.exe"
cargo build --release --target "$target" -p selgate
cargo build --release -p selgate
work=$(mktemp -d)
cleanup() {
  [ -n "${gate_pid:-}" ] && kill "$gate_pid" 2>/dev/null || true
  [ -n "${db_pid:-}" ] && kill "$db_pid" 2>/dev/null || true
  WINEPREFIX="$work/prefix" wineserver -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cp "target/$target/release/selgate.exe" "$work/"
# Test-only shim: Wine 8 lacks ProcessPrng (see prng_shim.c). Never shipped.
x86_64-w64-mingw32-gcc -O2 -shared -o "$work/bcryptprimitives.dll" \
  tests/windows/prng_shim.c tests/windows/prng_shim.def
export WINEPREFIX="$work/prefix" WINEDEBUG=-all
"$wine_bin" wineboot --init >/dev/null 2>&1 || true

echo "== selgate.exe demo under Wine"
timeout 300 "$wine_bin" "$work/selgate.exe" demo --bots 200 --concurrency 50 --seed 7

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
db_port=$(free_port)
gate_port=$(free_port)
linux=$root/target/release/selgate

echo "== Linux reference DBServer on 127.0.0.1:$db_port, Wine gate on 127.0.0.1:$gate_port"
"$linux" refdb --listen "127.0.0.1:$db_port" --dialect delphi >"$work/refdb.log" 2>&1 &
db_pid=$!
"$wine_bin" "$work/selgate.exe" run --listen "127.0.0.1:$gate_port" \
  --upstream "127.0.0.1:$db_port" --dialect delphi --status-interval 1s >"$work/gate.log" 2>&1 &
gate_pid=$!
for _ in $(seq 1 100); do
  if grep -q "DBServer link up" "$work/gate.log" 2>/dev/null; then break; fi
  sleep 0.2
done
grep -q "DBServer link up" "$work/gate.log" || { cat "$work/gate.log"; echo "the Wine gate never linked"; exit 1; }

echo "== Linux bots through the Wine gate"
if ! timeout 180 "$linux" bots --gate "127.0.0.1:$gate_port" --bots 200 --concurrency 40 --per-bot-source-ip --seed 11; then
  echo "--- gate log"; tail -40 "$work/gate.log"
  echo "--- refdb log"; tail -20 "$work/refdb.log"
  exit 1
fi
echo "wine e2e: OK"
