#!/usr/bin/env python3
"""Memory: peak RSS (VmHWM) of detector-api with the model loaded, against the PyTorch reference
(tools/reference/reference.py bench) on the same weights, both with one 128-token scoring done;
plus the service's worst case, every slot (4) scoring a 512-token text (the default maximum).

    bench/memory.py --out results/memory.json [--reference-python /work/venv-ref/bin/python]
                    [--no-reference]

The reference needs its own virtualenv (tools/reference/requirements.txt: torch, transformers),
which CI does not install; --no-reference measures the service alone.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402

REFERENCE = b.REPO_ROOT / "tools" / "reference" / "reference.py"
DEFAULT_REFERENCE_PYTHON = os.environ.get("REFERENCE_PYTHON", "/work/venv-ref/bin/python")


def hwm_mib(pid: int) -> float:
    return (b.proc_status_kib(pid, "VmHWM") or 0) / 1024.0


def rss_mib(pid: int) -> float:
    return (b.proc_status_kib(pid, "VmRSS") or 0) / 1024.0


def measure_service(workdir: Path, max_jobs: int) -> dict:
    service = b.start_service(workdir / "service", max_jobs=max_jobs)
    try:
        out = {"startup_s": service.startup_s,
               "after_load": {"hwm_mib": hwm_mib(service.pid), "rss_mib": rss_mib(service.pid)}}
        b.ctl_bench(service.base_url, service.api_key, concurrency=1, requests=1)
        out["after_one_128"] = {"hwm_mib": hwm_mib(service.pid), "rss_mib": rss_mib(service.pid)}
        # Five copies of the 128-token text: truncated to the default maximum of 512 tokens.
        long_text = workdir / "text-512plus.txt"
        long_text.write_text(" ".join([b.TEXT_128.read_text()] * 5))
        report = b.ctl_bench(service.base_url, service.api_key, concurrency=max_jobs,
                             requests=2 * max_jobs, text_file=long_text)
        out["all_slots_512"] = f"after_{max_jobs}x512"
        out[f"after_{max_jobs}x512"] = {"hwm_mib": hwm_mib(service.pid),
                                        "rss_mib": rss_mib(service.pid),
                                        "statuses": report["status"]}
        return out
    finally:
        service.stop()


def measure_reference(python: str, sizes: list[int]) -> dict:
    if not Path(python).is_file():
        raise RuntimeError(f"{python} not found: create the reference virtualenv "
                           "(tools/reference/requirements.txt) or pass --no-reference")
    argv = [python, str(REFERENCE), "bench", "--threads", "1", "--runs", "1",
            "--sizes", *map(str, sizes)]
    done = subprocess.run(argv, cwd=b.REPO_ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"the reference benchmark failed:\n{done.stderr[-3000:]}")
    load = re.search(r"load ([\d.]+) s\s+rss after load (\d+) MiB", done.stdout)
    peaks = {int(m.group(1)): float(m.group(2)) for m in
             re.finditer(r"^\s*(\d+)\s+[\d.]+\s+[\d.]+\s+(\d+)\s*$", done.stdout, re.M)}
    if not load or not peaks:
        raise RuntimeError(f"unexpected reference output:\n{done.stdout}")
    return {"load_s": float(load.group(1)), "hwm_after_load_mib": float(load.group(2)),
            "hwm_after_tokens_mib": peaks, "output": done.stdout}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--max-jobs", type=int, default=4)
    parser.add_argument("--reference-python", default=DEFAULT_REFERENCE_PYTHON)
    parser.add_argument("--no-reference", action="store_true",
                        help="measure the service only (CI has no torch)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.max_jobs = 2
    workdir = b.workdir_for(args)
    result = b.result_header("memory", args)
    try:
        result["service"] = measure_service(workdir, args.max_jobs)
    finally:
        b.cleanup()
    service_peak = result["service"]["after_one_128"]["hwm_mib"]
    print(f"detector-api peak RSS: after load {result['service']['after_load']['hwm_mib']:.0f} MiB, "
          f"after one 128-token job {service_peak:.0f} MiB, after "
          f"{args.max_jobs}x512 {result['service'][f'after_{args.max_jobs}x512']['hwm_mib']:.0f} MiB")
    if not args.no_reference:
        ref = measure_reference(args.reference_python, [128, 512])
        result["reference"] = ref
        ref_peak = ref["hwm_after_tokens_mib"][128]
        result["service_over_reference_128"] = service_peak / ref_peak
        print(f"reference peak RSS: after load {ref['hwm_after_load_mib']:.0f} MiB, after 128 "
              f"tokens {ref_peak:.0f} MiB; ratio {service_peak / ref_peak:.3f}")
    b.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
