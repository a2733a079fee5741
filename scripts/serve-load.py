#!/usr/bin/env python3
"""Load figure for `hsmkey serve` (docs/SERVER.md, "Load"): N client threads,
each on its own keep-alive connection, send GET requests for a number of
seconds; prints requests per second, p50 and p99 latency and the statuses.

Usage: scripts/serve-load.py URL HEADER:VALUE [CLIENTS] [SECONDS]
e.g.   scripts/serve-load.py http://127.0.0.1:8443/api/pvlt/1.0/system/admin/export_key \
           "Authorization:Bearer $KEY" 16 10
"""
import http.client
import sys
import threading
import time
import urllib.parse


def main():
    url, header = sys.argv[1], sys.argv[2]
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    name, value = header.split(":", 1)
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    latencies, statuses, lock = [], {}, threading.Lock()
    failures = {}  # status -> the first answer's body, to say why
    end = time.monotonic() + seconds

    def run():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        mine, seen = [], {}
        while time.monotonic() < end:
            t0 = time.monotonic()
            conn.request("GET", path, headers={name.strip(): value.strip()})
            r = conn.getresponse()
            body = r.read()
            if r.status >= 400:
                with lock:
                    failures.setdefault(r.status, body[:300])
            mine.append(time.monotonic() - t0)
            seen[r.status] = seen.get(r.status, 0) + 1
        with lock:
            latencies.extend(mine)
            for k, v in seen.items():
                statuses[k] = statuses.get(k, 0) + v

    start = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(
        f"{len(latencies)} requests in {took:.1f} s: {len(latencies) / took:.0f} req/s, "
        f"p50 {pick(0.50):.1f} ms, p99 {pick(0.99):.1f} ms, statuses {statuses}"
    )
    for status, body in sorted(failures.items()):
        print(f"  first {status}: {body.decode('utf-8', 'replace')}")


if __name__ == "__main__":
    main()
