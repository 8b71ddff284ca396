#!/usr/bin/env python3
"""A /healthz prober, run as its own process beside a load: one GET every `--interval` seconds on
one keep-alive connection for `--duration` seconds, recording each latency as the client sees it.
The key comes from $DETECTOR_API_KEY.

    bench/probe.py --url http://127.0.0.1:8080 --interval 0.05 --duration 20 --out probe.json
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import KEY_ENV, latency_summary, write_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    key = os.environ.get(KEY_ENV, "")
    if not key:
        print(f"${KEY_ENV} is not set", file=sys.stderr)
        return 2
    url = urllib.parse.urlsplit(args.url)
    headers = {"Authorization": f"Bearer {key}"}
    conn: http.client.HTTPConnection | None = None
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    begin = time.monotonic()
    count = max(1, int(args.duration / args.interval))
    for i in range(count):
        delay = begin + i * args.interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if conn is None:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
            conn.connect()  # connection set-up is not part of a probe's latency
        started = time.perf_counter()
        try:
            conn.request("GET", "/healthz", headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = None
            continue
        latencies.append((time.perf_counter() - started) * 1000.0)
        statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
    report = {
        "url": args.url,
        "interval_s": args.interval,
        "probes": count,
        "statuses": statuses,
        "errors": errors,
        "latency": latency_summary(latencies),
        "raw": {"latency_ms": [round(v, 3) for v in latencies]},
    }
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
