#!/usr/bin/env python3
"""Thread layout: threads per job against jobs side by side, on the model benchmark
(crates/inference/benches/forward.rs, which runs `Detector::signals` with `--threads` threads per
job). Each layout runs J copies of the benchmark at once, each with T threads, on the same 128
tokens; throughput is J / (mean of their median times), in forward passes per second.

    bench/layout.py --out results/layout.json [--runs 5] [--layouts 1x1,1x2,2x1,4x1,2x2]
                    [--bench-binary target/release/deps/forward-...]

A layout JxT is J jobs of T threads each; `JxT:VAR=value` runs it with that environment (e.g.
CANDLE_NUM_THREADS=1, which leaves candle's global pool for element-wise operations without
worker threads, so each job does them on its own thread). The service runs one thread per job (Detector's default)
and as many jobs as it has slots, so 2x1 is "one job per core" and 4x1 the default cap on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402

ROW = re.compile(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s*$")


def bench_binary() -> Path:
    """The forward benchmark's executable, built by cargo if it is missing or stale."""
    done = subprocess.run(["cargo", "bench", "--locked", "-p", "inference", "--bench", "forward",
                           "--no-run", "--message-format=json"], cwd=b.REPO_ROOT,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"building the forward benchmark failed:\n{done.stderr[-3000:]}")
    for line in done.stdout.splitlines():
        message = json.loads(line)
        if message.get("executable") and message.get("target", {}).get("name") == "forward":
            return Path(message["executable"])
    raise RuntimeError("cargo reported no executable for the forward benchmark")


def parse(output: str, tokens: int) -> dict:
    for line in output.splitlines():
        m = ROW.match(line)
        if m and int(m.group(1)) == tokens:
            return {"median_s": float(m.group(2)), "tokens_per_s": float(m.group(3)),
                    "peak_rss_mib": float(m.group(4))}
    raise RuntimeError(f"no {tokens}-token row in the benchmark's output:\n{output}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--layouts", default="1x1,1x2,2x1,4x1,2x2,1x1:CANDLE_NUM_THREADS=1,"
                                               "2x1:CANDLE_NUM_THREADS=1,4x1:CANDLE_NUM_THREADS=1")
    parser.add_argument("--bench-binary", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.tokens, args.layouts = 1, 32, "1x1,2x1:CANDLE_NUM_THREADS=1"
    binary = args.bench_binary or bench_binary()
    result = b.result_header("layout", args)
    result["bench_binary"] = str(binary)
    rows = []
    for layout in [l for l in args.layouts.split(",") if l]:
        shape, _, env_text = layout.partition(":")
        jobs, threads = (int(x) for x in shape.split("x"))
        extra_env = dict(item.split("=", 1) for item in env_text.split("+") if item)
        argv = [str(binary), "--threads", str(threads), "--runs", str(args.runs),
                "--sizes", str(args.tokens)]
        env = {**os.environ, **extra_env}
        procs = [subprocess.Popen(argv, cwd=b.REPO_ROOT, stdout=subprocess.PIPE, env=env,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(jobs)]
        outputs = []
        for p in procs:
            out, _ = p.communicate(timeout=900)
            if p.returncode != 0:
                raise RuntimeError(f"{argv} exited with {p.returncode}:\n{out}")
            outputs.append(parse(out, args.tokens))
        mean_s = statistics.fmean(o["median_s"] for o in outputs)
        rows.append({"layout": layout, "env": extra_env, "jobs": jobs, "threads_per_job": threads,
                     "cpu_threads": jobs * threads, "loadavg": b.loadavg(),
                     "median_s_per_job": [o["median_s"] for o in outputs],
                     "mean_job_s": mean_s, "forwards_per_s": jobs / mean_s,
                     "peak_rss_mib_per_process": max(o["peak_rss_mib"] for o in outputs)})
        print(f"{layout}: {jobs} x {threads} threads, job {mean_s:.3f} s, "
              f"{jobs / mean_s:.3f} forwards/s")
    base = rows[0]["forwards_per_s"]
    for row in rows:
        row["throughput_vs_first"] = row["forwards_per_s"] / base
    result["layouts"] = rows
    b.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
