#!/usr/bin/env python3
"""Jobs per core: the service at several slot caps (DETECTOR_MAX_CONCURRENT_JOBS), 128-token
texts, straight to detector-api. For each cap: a fresh service (its start-up is recorded), the
steady throughput and latency with every slot busy (closed loop, concurrency = cap), then an
open-loop offered load of --overload-multiple x that throughput, for the goodput under overload
(a cap equal to the core count leaves a core idle between one job's end and the next arrival;
a larger cap keeps other jobs running meanwhile).

    bench/caps.py --out results/caps.json [--caps 1,2,4,8,4:CANDLE_NUM_THREADS=1] [--duration 15]
                  [--overload-multiple 10]

A cap may carry environment settings for the service after a colon (`4:CANDLE_NUM_THREADS=1`,
several joined by `+`), to compare a layout knob at the same cap.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402
from overload import open_loop_phase, steady_window  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    b.add_common_args(parser, duration=15)
    parser.add_argument("--caps", default="1,2,4,8,2:CANDLE_NUM_THREADS=1,4:CANDLE_NUM_THREADS=1")
    parser.add_argument("--overload-multiple", type=float, default=10.0,
                        help="offered load of the overload step, x the cap's throughput (0: skip)")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.caps = 2, "1,2:CANDLE_NUM_THREADS=1"
    workdir = b.workdir_for(args)
    result = b.result_header("caps", args)
    rows = []
    try:
        for variant in [c for c in args.caps.split(",") if c]:
            cap_text, _, env_text = variant.partition(":")
            cap = int(cap_text)
            env = dict(item.split("=", 1) for item in env_text.split("+") if item)
            name = variant.replace(":", "-").replace("=", "").replace("+", "-")
            service = b.start_service(workdir / f"service-{name}", max_jobs=cap, env=env)
            b.ctl_bench(service.base_url, service.api_key, concurrency=cap, requests=cap)
            start, t0 = service.log_offset(), time.time()
            report = b.ctl_bench(service.base_url, service.api_key, concurrency=cap,
                                 duration=args.duration)
            time.sleep(0.2)
            rate = b.completion_rate(service.requests_logged(start),
                                     *steady_window(t0, args.duration))
            row = {"variant": variant, "cap": cap, "env": env, "startup_s": service.startup_s, "loadavg": b.loadavg(),
                   "steady_rps": rate["rps"], "completion_rate": rate,
                   "latency_200": report["latency_200"], "statuses": report["status"]}
            if args.overload_multiple > 0:
                phase = open_loop_phase(service, workdir / f"service-{name}", rate["rps"],
                                        args.overload_multiple, args.duration)
                phase.pop("raw", None)
                row["overload"] = phase
            row["vm_hwm_mib"] = (b.proc_status_kib(service.pid, "VmHWM") or 0) / 1024.0
            service.stop()
            rows.append(row)
            print(f"cap {variant}: {b.fmt(rate['rps'], '.3f')} req/s p50 "
                  f"{b.fmt(report['latency_200'] and report['latency_200']['p50_ms'], '.0f')} ms"
                  + (f", overload goodput {b.fmt(row['overload']['goodput_pct_of_capacity'], '.1f')}%"
                     if "overload" in row else ""))
    finally:
        b.cleanup()
    result["caps"] = rows
    b.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
