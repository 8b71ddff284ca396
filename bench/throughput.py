#!/usr/bin/env python3
"""Service throughput: requests/s at the default cap (4 slots, concurrency 4) for a 128-token text,
straight to detector-api and through nginx with TLS (the repo's templates, production values,
a throwaway CA), in alternating rounds on one service so both see the same machine.

    bench/throughput.py --out results/throughput.json [--duration 20] [--rounds 2]

Both paths use `detectorctl bench` with keep-alive connections. Also reported: nginx's own time
per request from its access log (rt - urt: request time minus upstream time), which is the edge's
share without the client's, and the service's start-up (process start to first 200 on /healthz).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    b.add_common_args(parser, duration=20)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating direct/edge rounds (order flips every round)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-jobs", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=8, help="requests before measuring")
    parser.add_argument("--probes", type=int, default=200,
                        help="/healthz pairs (direct, edge) for the edge's fixed cost")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.rounds, args.warmup = 1, 1, 1
    workdir = b.workdir_for(args)
    result = b.result_header("throughput", args)
    try:
        service = b.start_service(workdir / "service", max_jobs=args.max_jobs)
        # Rate limits raised so the edge never answers 429 in place of the service (the /healthz
        # probes below go faster than the production 5 r/s per IP); the limit_req lookups still run.
        edge = b.start_edge_for(service, workdir, overrides=RAISED_LIMITS)
        result["startup_s"] = service.startup_s
        targets = {
            "direct": dict(url=service.base_url),
            "edge": dict(url=edge.url, ca_file=edge.ca_cert, connect_to="127.0.0.1"),
        }
        for name, target in targets.items():
            b.ctl_bench(key=service.api_key, concurrency=args.concurrency,
                        requests=max(args.warmup, 1), **target)
        rounds = []
        for i in range(args.rounds):
            order = ["direct", "edge"] if i % 2 == 0 else ["edge", "direct"]
            for name in order:
                edge_lines_before = len(edge.nginx.access_lines())
                log_start, t0 = service.log_offset(), time.time()
                report = b.ctl_bench(key=service.api_key, concurrency=args.concurrency,
                                     duration=args.duration, **targets[name])
                time.sleep(0.2)
                # The steady completion rate from the service's log (slots fill at once at the
                # start, so the first seconds are left out; so is the tail after the deadline).
                window = (t0 + min(3.0, args.duration / 4), t0 + args.duration)
                rate = b.completion_rate(service.requests_logged(log_start), *window)
                entry = {"round": i, "path": name, "loadavg": b.loadavg(), "report": report,
                         "completion_rate": rate}
                if name == "edge":
                    time.sleep(0.2)  # nginx writes a line after the response is sent
                    entry["nginx_own_ms"] = nginx_own_time(edge, edge_lines_before)
                rounds.append(entry)
        result["rounds"] = rounds
        result["summary"] = summarize(rounds)
        result["healthz_pairs"] = healthz_pairs(service, edge, 5 if args.smoke else args.probes)
        result["summary"]["healthz_added_p50_ms"] = result["healthz_pairs"]["added_p50_ms"]
        result["service_vm_hwm_mib"] = (b.proc_status_kib(service.pid, "VmHWM") or 0) / 1024.0
    finally:
        b.cleanup()
    b.write_json(args.out, result)
    s = result["summary"]
    print(f"direct {s['direct']['steady_rps']:.3f} req/s p50 {s['direct']['p50_ms']:.1f} ms | "
          f"edge {s['edge']['steady_rps']:.3f} req/s p50 {s['edge']['p50_ms']:.1f} ms | "
          f"added p50 {s['added_p50_pct']:+.2f}%  nginx own mean {b.fmt(s['nginx_own_mean_ms'])} ms, "
          f"/healthz added p50 {b.fmt(s['healthz_added_p50_ms'])} ms")
    return 0


RAISED_LIMITS = {"DETECTOR_EDGE_IP_RATE": "10000r/s", "DETECTOR_EDGE_KEY_RATE": "10000r/s",
                 "DETECTOR_EDGE_IP_BURST": "1000", "DETECTOR_EDGE_KEY_BURST": "1000"}


def healthz_pairs(service: b.Service, edge: b.Edge, pairs: int) -> dict:
    """The edge's fixed cost per request, without the noise of a CPU-bound scoring: GET /healthz
    alternately straight and through nginx + TLS, each on its own keep-alive connection."""
    import requests
    headers = {"Authorization": f"Bearer {service.api_key}"}
    direct = requests.Session()
    direct.trust_env = False
    through = edge.nginx.https_client(edge.ca_cert)
    times: dict[str, list[float]] = {"direct": [], "edge": []}
    statuses: dict[str, int] = {}
    for session, url, name in ((direct, service.base_url + "/healthz", "direct"),
                               (through, edge.nginx.https_url("/healthz"), "edge")):
        session.get(url, headers=headers, timeout=10)  # connect (and TLS handshake) first
    for _ in range(pairs):
        for session, url, name in ((direct, service.base_url + "/healthz", "direct"),
                                   (through, edge.nginx.https_url("/healthz"), "edge")):
            started = time.perf_counter()
            response = session.get(url, headers=headers, timeout=10)
            times[name].append((time.perf_counter() - started) * 1000.0)
            key = f"{name} {response.status_code}"
            statuses[key] = statuses.get(key, 0) + 1
    d, e = b.latency_summary(times["direct"]), b.latency_summary(times["edge"])
    return {"pairs": pairs, "statuses": statuses, "direct": d, "edge": e,
            "added_p50_ms": e["p50_ms"] - d["p50_ms"] if d and e else None}


def nginx_own_time(edge: b.Edge, skip: int) -> dict | None:
    """rt - urt of the /score lines written since line `skip` (nginx's time beyond the upstream's:
    reading the request, TLS, proxying, sending the answer)."""
    from harness.nginx import parse_access_line
    own = []
    for line in edge.nginx.access_lines()[skip:]:
        entry = parse_access_line(line)
        if entry and entry["path"] == "/score" and entry["urt"] not in ("-", ""):
            try:
                own.append((float(entry["rt"]) - float(entry["urt"].split(",")[-1])) * 1000.0)
            except ValueError:
                continue
    return b.latency_summary(own)


def summarize(rounds: list[dict]) -> dict:
    """Per path: requests/s and 200-latency over all rounds (requests pooled), and the ratios."""
    out: dict = {}
    for name in ("direct", "edge"):
        reports = [r["report"] for r in rounds if r["path"] == name]
        ok = sum(r["status"]["200"] for r in reports)
        rates = [r["completion_rate"]["rps"] for r in rounds if r["path"] == name]
        secs = sum(r["elapsed_secs"] for r in reports)
        p50s = [r["latency_200"]["p50_ms"] for r in reports if r["latency_200"]]
        out[name] = {
            "requests_200": ok,
            "non_200": sum(r["requests"] - r["status"]["200"] for r in reports),
            # detectorctl's figure: 200s over the run including the tail after the deadline.
            "throughput_rps": ok / secs if secs else 0.0,
            # The service's steady completion rate (median over rounds): the capacity.
            "steady_rps": statistics.median(rates) if rates else None,
            # Median over rounds of each round's p50 (hdrhistogram, 3 significant digits).
            "p50_ms": statistics.median(p50s) if p50s else None,
            "p99_ms": statistics.median([r["latency_200"]["p99_ms"] for r in reports
                                         if r["latency_200"]]) if p50s else None,
        }
    d, e = out["direct"], out["edge"]
    out["edge_over_direct_throughput"] = (e["steady_rps"] / d["steady_rps"]
                                          if d["steady_rps"] and e["steady_rps"] else None)
    out["added_p50_ms"] = (e["p50_ms"] - d["p50_ms"]) if d["p50_ms"] and e["p50_ms"] else None
    out["added_p50_pct"] = (100.0 * out["added_p50_ms"] / d["p50_ms"]
                            if out["added_p50_ms"] is not None else None)
    # nginx logs both times in whole milliseconds, so single values are 0 or 1 ms (even -1 when
    # the two clocks tick apart); the mean over many requests is the meaningful figure.
    own = [r["nginx_own_ms"]["mean_ms"] for r in rounds if r.get("nginx_own_ms")]
    out["nginx_own_mean_ms"] = statistics.median(own) if own else None
    out["nginx_own_mean_pct"] = (100.0 * out["nginx_own_mean_ms"] / d["p50_ms"]
                                 if own and d["p50_ms"] else None)
    return out


if __name__ == "__main__":
    sys.exit(main())
