#!/usr/bin/env python3
"""Overload: how the service behaves past its capacity, 128-token texts, straight to detector-api.

    bench/overload.py --out results/overload.json [--duration 20] [--capacity RPS]
                      [--sweep 0.5,1,2,5,10] [--storm-concurrency 40] [--max-jobs 4]

1. Capacity: `detectorctl bench` at concurrency = slots (every slot busy, nothing refused);
   skipped when --capacity gives it (e.g. from throughput.py of the same run).
2. Open-loop sweep: bench/openloop.py offers `m x capacity` requests/s for each m of --sweep,
   requests started on schedule whatever the answers; goodput (200/s) against offered load.
3. Retry storm: `detectorctl bench` at --storm-concurrency (10x the slots) in a closed loop: a
   refused client asks again at once, never honouring Retry-After, the worst client behaviour.

During every phase a separate process probes /healthz every 50 ms (bench/probe.py), RSS is sampled
every 250 ms, and the service's own JSON request log gives the latency of each refusal (503) and
each /healthz as the service measured it. Every 503 of the open-loop phases is checked for
Retry-After. `--service-env` starts the service with other settings, e.g.
`DETECTOR_INFERENCE_NICE=10` (the priority comparison in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402

PROBE_INTERVAL_S = 0.05
# The load generators share the two cores with the service; at the lowest priority they take only
# CPU the service leaves idle, as clients on other machines would. The prober keeps priority 0:
# its latency is the measurement.
GENERATOR_NICE = 19
# Completions in the first seconds of a phase are not counted: the slots fill at once when a
# phase starts, which would overstate the steady rate.
WARM_UP_S = 3.0


def steady_window(t0: float, duration: float) -> tuple[float, float]:
    """The part of a phase started at UNIX time t0 whose completions measure the steady rate:
    after the warm-up, until new requests stop (the in-flight tail is not counted)."""
    return t0 + min(WARM_UP_S, duration / 4), t0 + duration


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    b.add_common_args(parser, duration=20)
    parser.add_argument("--capacity", type=float, default=None,
                        help="requests/s the service sustains (measured when absent)")
    parser.add_argument("--sweep", default="0.5,1,2,5,10",
                        help="offered loads, as multiples of capacity (open loop)")
    parser.add_argument("--storm-concurrency", type=int, default=None,
                        help="closed-loop clients of the retry storm (default 10x --max-jobs; "
                             "0 to skip)")
    parser.add_argument("--max-jobs", type=int, default=4)
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment setting for the service, e.g. "
                             "DETECTOR_INFERENCE_NICE=10 (repeatable)")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.sweep = 2, "10"
    storm = args.storm_concurrency if args.storm_concurrency is not None else 10 * args.max_jobs
    workdir = b.workdir_for(args)
    result = b.result_header("overload", args)
    try:
        service_env = dict(setting.split("=", 1) for setting in args.service_env)
        result["service_env"] = service_env
        service = b.start_service(workdir / "service", max_jobs=args.max_jobs, env=service_env)
        result["startup_s"] = service.startup_s
        with b.RssSampler(service.pid) as whole_run:
            b.ctl_bench(service.base_url, service.api_key, concurrency=args.max_jobs,
                        requests=args.max_jobs)  # warm-up
            if args.capacity is None:
                start, t0 = service.log_offset(), time.time()
                cap = b.ctl_bench(service.base_url, service.api_key, concurrency=args.max_jobs,
                                  duration=args.duration)
                window = steady_window(t0, args.duration)
                rate = b.completion_rate(service.requests_logged(start), *window)
                capacity = rate["rps"]
                result["capacity_run"] = {"report": cap, "completion_rate": rate}
            else:
                capacity = args.capacity
            result["capacity_rps"] = capacity
            phases = []
            for multiple in [float(m) for m in args.sweep.split(",") if m]:
                phases.append(open_loop_phase(service, workdir, capacity, multiple, args.duration))
            if storm > 0:
                phases.append(storm_phase(service, workdir, capacity, storm, args.duration))
            result["phases"] = phases
        result["rss_whole_run"] = whole_run.summary()
        result["rss_whole_run_samples"] = whole_run.samples
        result["service_vm_hwm_mib"] = (b.proc_status_kib(service.pid, "VmHWM") or 0) / 1024.0
    finally:
        b.cleanup()
    b.write_json(args.out, result)
    for p in result["phases"]:
        refusal = p.get("refusal_client") or p.get("answered_client") or {}
        probe = p["healthz_probe"]["latency"] or {}
        print(f"{p['phase']:<14} offered {b.fmt(p['offered_rps'])}/s goodput "
              f"{b.fmt(p['goodput_rps'], '.3f')}/s ({b.fmt(p['goodput_pct_of_capacity'], '.1f')}%) "
              f"refusal p99 client {b.fmt(refusal.get('p99_ms'))} ms, "
              f"healthz p99 probe {b.fmt(probe.get('p99_ms'))} ms, "
              f"rss growth {b.fmt(p['rss'].get('growth_first_to_last_quarter_mib'), '.1f')} MiB")
    return 0


def service_side(service: b.Service, start: int, end: int, window: tuple[float, float]) -> dict:
    """Goodput, and latencies of refusals and /healthz answers, as the service logged them in
    [start, end)."""
    lines = service.requests_logged(start, end)
    refusals = [l["latency_ms"] for l in lines if l.get("route") == "/score" and l["status"] == 503]
    healthz = [l["latency_ms"] for l in lines if l.get("route") == "/healthz"]
    statuses: dict[str, int] = {}
    for l in lines:
        statuses[f"{l.get('route')} {l['status']}"] = statuses.get(f"{l.get('route')} {l['status']}", 0) + 1
    return {"goodput": b.completion_rate(lines, *window),
            "refusal": b.latency_summary(refusals), "healthz": b.latency_summary(healthz),
            "statuses": statuses,
            "raw_refusal_ms": [round(v, 3) for v in refusals][:20000]}


def with_probe(service: b.Service, workdir: Path, name: str, duration: float, load):
    """Run `load()` while a /healthz prober runs and RSS is sampled; returns (load's result,
    probe report, RSS summary, service-side latencies)."""
    probe_out = workdir / f"probe-{name}.json"
    start, t0 = service.log_offset(), time.time()
    cpu0 = b.cpu_seconds(service.pid)
    with b.RssSampler(service.pid) as rss:
        probe = b.start_helper("probe.py", ["--url", service.base_url, "--interval",
                                            str(PROBE_INTERVAL_S), "--duration", str(duration)],
                               probe_out, service.api_key, workdir)
        loaded = load()
        probed = b.wait_helper(probe, probe_out, timeout=duration + 60)
    elapsed = time.time() - t0
    cpu1 = b.cpu_seconds(service.pid)
    time.sleep(0.2)  # the service logs a request after its answer is sent
    end = service.log_offset()
    svc = service_side(service, start, end, steady_window(t0, duration))
    svc["cpu_cores_used"] = (cpu1 - cpu0) / elapsed if cpu0 is not None and cpu1 is not None else None
    return loaded, probed, rss, svc


def open_loop_phase(service: b.Service, workdir: Path, capacity: float, multiple: float,
                    duration: float) -> dict:
    rate = max(0.1, capacity * multiple)
    name = f"open-{multiple:g}x"
    out = workdir / f"{name}.json"

    def load():
        gen = b.start_helper("openloop.py", ["--url", service.base_url, "--rate", f"{rate:.4f}",
                                             "--duration", str(duration)],
                             out, service.api_key, workdir, nice=GENERATOR_NICE)
        return b.wait_helper(gen, out, timeout=duration + 180)

    loaded, probed, rss, svc = with_probe(service, workdir, name, duration, load)
    return {
        "phase": name, "mode": "open", "multiple": multiple, "loadavg": b.loadavg(),
        "offered_rps": rate, "started_rps": loaded["started_rps"],
        "goodput_rps": svc["goodput"]["rps"],
        "goodput_pct_of_capacity": 100.0 * svc["goodput"]["rps"] / capacity if capacity else None,
        "goodput_window": svc["goodput"],
        "goodput_client_rps": loaded["goodput_rps"],
        "statuses": loaded["statuses"],
        "refusals_without_retry_after": loaded["refusals_without_retry_after"],
        "late_starts": loaded["late_starts"],
        "latency_200_client": loaded["latency_200"],
        "refusal_client": loaded["latency_503"],
        "refusal_service": svc["refusal"],
        "healthz_service": svc["healthz"],
        "healthz_probe": {k: probed[k] for k in ("probes", "statuses", "errors", "latency")},
        "rss": rss.summary(),
        "service_cpu_cores": svc["cpu_cores_used"],
        "raw": {"latency_200_ms": loaded["raw"]["latency_200_ms"],
                "refusal_client_ms": loaded["raw"]["latency_503_ms"],
                "refusal_service_ms": svc["raw_refusal_ms"],
                "healthz_probe_ms": probed["raw"]["latency_ms"]},
    }


def storm_phase(service: b.Service, workdir: Path, capacity: float, concurrency: int,
                duration: float) -> dict:
    name = f"storm-c{concurrency}"

    def load():
        return b.ctl_bench(service.base_url, service.api_key, concurrency=concurrency,
                           duration=duration, nice=GENERATOR_NICE)

    report, probed, rss, svc = with_probe(service, workdir, name, duration, load)
    ok = report["status"]["200"]
    goodput = svc["goodput"]["rps"]
    return {
        "phase": name, "mode": "closed", "concurrency": concurrency, "loadavg": b.loadavg(),
        "offered_rps": report["throughput_rps"],
        "goodput_rps": goodput,
        "goodput_pct_of_capacity": 100.0 * goodput / capacity if capacity else None,
        "goodput_window": svc["goodput"],
        "statuses": {"200": ok, "503": report["status"]["503"], "other": report["status"]["other"],
                     "errors": report["status"]["errors"]},
        "latency_200_client": report["latency_200"],
        "answered_client": report["latency"],
        "refusal_service": svc["refusal"],
        "healthz_service": svc["healthz"],
        "healthz_probe": {k: probed[k] for k in ("probes", "statuses", "errors", "latency")},
        "rss": rss.summary(),
        "service_cpu_cores": svc["cpu_cores_used"],
        "raw": {"refusal_service_ms": svc["raw_refusal_ms"][:5000],
                "healthz_probe_ms": probed["raw"]["latency_ms"]},
    }


if __name__ == "__main__":
    sys.exit(main())
