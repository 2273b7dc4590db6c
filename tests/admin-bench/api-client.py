#!/usr/bin/env python3
"""Calls a selgate admin endpoint RATE times a second for SECS seconds from
four keep-alive connections (status, sessions, ips, events in turn, each
connection a quarter of the rate) and prints how many calls were answered
200. Loopback only; the token comes from SELGATE_ADMIN_TOKEN."""
import http.client, os, sys, threading, time

addr, rate, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
host, port = addr.rsplit(":", 1)
assert host.startswith("127."), "loopback only"
token = os.environ["SELGATE_ADMIN_TOKEN"]
paths = ["/api/status", "/api/sessions?limit=100", "/api/ips?limit=50", "/api/events?limit=50"]
THREADS = 4
counts = [[0, 0] for _ in range(THREADS)]
start = time.monotonic()

def worker(t):
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    i = 0
    while time.monotonic() - start < secs:
        due = start + (i * THREADS + t) / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        try:
            conn.request("GET", paths[(i + t) % len(paths)],
                         headers={"Authorization": "Bearer " + token})
            r = conn.getresponse()
            r.read()
            counts[t][0 if r.status == 200 else 1] += 1
            if r.status != 200 and counts[t][1] == 1:
                print(f"first refusal: {r.status}", file=sys.stderr, flush=True)
        except Exception as e:
            counts[t][1] += 1
            if counts[t][1] == 1:
                print(f"first error: {e!r}", file=sys.stderr, flush=True)
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
        i += 1

threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
for th in threads:
    th.start()
def report():
    ok = sum(c[0] for c in counts)
    bad = sum(c[1] for c in counts)
    print(f"{ok} ok, {bad} not, {(ok + bad) / (time.monotonic() - start):.0f}/s", flush=True)
while any(th.is_alive() for th in threads):
    time.sleep(1)
    report()
report()
