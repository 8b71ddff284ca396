#!/usr/bin/env python3
"""Start-up: from process start (spawn) to the first 200 on /healthz, polled every 5 ms, over
several starts of the release detector-api with the real model (page cache warm after the first
start). The model's own load time, as the service logs it, is reported beside it.

    bench/startup.py --out results/startup.json [--starts 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.starts = 1
    workdir = b.workdir_for(args)
    result = b.result_header("startup", args)
    starts = []
    try:
        for i in range(args.starts):
            service = b.start_service(workdir / f"service-{i}")
            loaded = [json_line for json_line in _log_lines(service)
                      if json_line.get("message") == "Model loaded."]
            starts.append({"startup_s": service.startup_s, "loadavg": b.loadavg(),
                           "model_load_s": loaded[0].get("load_seconds") if loaded else None})
            service.stop()
    finally:
        b.cleanup()
    result["starts"] = starts
    times = [s["startup_s"] for s in starts]
    result["median_startup_s"] = statistics.median(times)
    loads = [s["model_load_s"] for s in starts if s["model_load_s"] is not None]
    result["median_model_load_s"] = statistics.median(loads) if loads else None
    b.write_json(args.out, result)
    print(f"start to first 200 on /healthz: median {result['median_startup_s']:.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}); model load "
          f"{b.fmt(result['median_model_load_s'], '.3f')} s")
    return 0


def _log_lines(service: b.Service) -> list[dict]:
    import json
    out = []
    for raw in service.log_path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out


if __name__ == "__main__":
    sys.exit(main())
