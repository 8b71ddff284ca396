#!/usr/bin/env python3
"""Open-loop load on POST /score: requests start on a fixed schedule (`--rate` per second, evenly
spaced) whatever the answers, so the offered load is exactly the rate, unlike a closed loop whose
clients wait for (or, refused, immediately repeat) their last request. Every 503 is checked for a
Retry-After header. Plain HTTP straight to the service; the key comes from $DETECTOR_API_KEY.

    bench/openloop.py --url http://127.0.0.1:8080 --rate 30 --duration 20 --out result.json

Writes: offered rate, achieved start rate, statuses, goodput (200/s), per-status latency
summaries, the raw latencies (for plots) and how many starts ran late (a saturated client would
make the offered load a lie, so lateness is reported, not hidden).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import KEY_ENV, TEXT_128, latency_summary, write_json  # noqa: E402

# A start more than this late counts as late (the client could not keep the schedule).
LATE_MS = 20.0


class Client(threading.local):
    """One keep-alive connection per worker thread."""

    conn: http.client.HTTPConnection | None = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests started per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds of arrivals")
    parser.add_argument("--text-file", type=Path, default=TEXT_128)
    parser.add_argument("--workers", type=int, default=128,
                        help="most requests in flight at once (threads)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    key = os.environ.get(KEY_ENV, "")
    if not key:
        print(f"${KEY_ENV} is not set", file=sys.stderr)
        return 2
    url = urllib.parse.urlsplit(args.url)
    body = json.dumps({"text": args.text_file.read_text()}).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    local = Client()
    results: list[dict] = []
    lock = threading.Lock()

    def one(scheduled: float) -> None:
        started = time.monotonic()
        status, retry_after, error = None, None, None
        for attempt in range(2):
            if local.conn is None:
                local.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=args.timeout)
            try:
                local.conn.request("POST", "/score", body=body, headers=headers)
                response = local.conn.getresponse()
                response.read()
                status = response.status
                retry_after = response.getheader("Retry-After")
                if response.getheader("Connection", "").lower() == "close":
                    local.conn.close()
                    local.conn = None
                break
            except (OSError, http.client.HTTPException) as e:
                # A keep-alive connection the server closed in between: one fresh retry.
                local.conn.close()
                local.conn = None
                error = f"{type(e).__name__}: {e}"
                if attempt == 1 or time.monotonic() - started > 1.0:
                    break
        finished = time.monotonic()
        with lock:
            results.append({"late_ms": (started - scheduled) * 1000.0,
                            "latency_ms": (finished - started) * 1000.0,
                            "status": status, "retry_after": retry_after,
                            "error": error if status is None else None})

    interval = 1.0 / args.rate
    count = max(1, int(round(args.rate * args.duration)))
    begin = time.monotonic() + 0.05
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for i in range(count):
            scheduled = begin + i * interval
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, scheduled)
        arrivals_end = time.monotonic()
    elapsed = time.monotonic() - begin

    statuses: dict[str, int] = {}
    for r in results:
        name = str(r["status"]) if r["status"] is not None else "error"
        statuses[name] = statuses.get(name, 0) + 1
    ok = [r["latency_ms"] for r in results if r["status"] == 200]
    refused = [r["latency_ms"] for r in results if r["status"] == 503]
    arrival_window = arrivals_end - begin
    report = {
        "url": args.url,
        "offered_rps": args.rate,
        "requests": len(results),
        "arrival_window_s": arrival_window,
        "started_rps": len(results) / arrival_window if arrival_window > 0 else None,
        "elapsed_s": elapsed,
        # Goodput over the arrival window: the jobs still running after it ended were admitted
        # inside it, so this slightly overstates a steady state by at most the slots' worth.
        "goodput_rps": len(ok) / arrival_window if arrival_window > 0 else None,
        "statuses": statuses,
        "refusals_without_retry_after": sum(1 for r in results
                                            if r["status"] == 503 and not r["retry_after"]),
        "late_starts": sum(1 for r in results if r["late_ms"] > LATE_MS),
        "latency_200": latency_summary(ok),
        "latency_503": latency_summary(refused),
        "first_error": next((r["error"] for r in results if r["error"]), None),
        "raw": {"latency_200_ms": [round(v, 3) for v in ok],
                "latency_503_ms": [round(v, 3) for v in refused]},
    }
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
