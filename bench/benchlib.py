"""What the service benchmarks share: the real detector-api and a harness-style nginx in front of
it, start-up timing, RSS sampling, `detectorctl bench`, the service's own request log, results.

The processes are started with the ops-test harness (tests/ops/harness), so the edge under test
is rendered from the repo's templates exactly as in the tests and in production. Every process is
torn down when the script exits.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "bench"
sys.path.insert(0, str(REPO_ROOT / "tests" / "ops"))

from harness.nginx import Nginx, start_edge  # noqa: E402
from harness.pki import issue_server_cert, make_ca  # noqa: E402
from harness.procs import ManagedProcess, stop_all, wait_for_port  # noqa: E402
from harness.service import (API_BINARY, CTL_BINARY, MODEL_PATH, DetectorService,  # noqa: E402
                             require_model, require_release_binary)

# Exactly 128 tokens of the model's tokenizer (checked by the smoke test through /score).
TEXT_128 = BENCH_DIR / "text-128.txt"
EDGE_HOSTNAME = "detector.test"
KEY_ENV = "DETECTOR_API_KEY"
# A start-up that takes longer than this is broken, not slow.
STARTUP_TIMEOUT_S = 120.0


def new_key() -> str:
    return "dsk_" + secrets.token_urlsafe(32)


# ---------------------------------------------------------------------------------------------
# Statistics


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def fmt(value: object, spec: str = ".2f") -> str:
    """A number for a progress line, or "-" when there is none (tiny smoke runs)."""
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def latency_summary(values_ms: Sequence[float]) -> dict | None:
    if not values_ms:
        return None
    return {
        "count": len(values_ms),
        "p50_ms": percentile(values_ms, 50),
        "p90_ms": percentile(values_ms, 90),
        "p99_ms": percentile(values_ms, 99),
        "max_ms": max(values_ms),
        "mean_ms": statistics.fmean(values_ms),
    }


# ---------------------------------------------------------------------------------------------
# The machine


def machine_info() -> dict:
    """What the figures were measured on (lscpu summary, memory, load at the time)."""
    info: dict = {"kernel": platform.release(), "python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu", "-J"], capture_output=True, text=True, timeout=10)
        fields = {e["field"].rstrip(":"): e["data"] for e in json.loads(lscpu.stdout)["lscpu"]}
        for name in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket",
                     "Hypervisor vendor", "L2 cache", "L3 cache"):
            if name in fields:
                info[name] = fields[name]
        flags = fields.get("Flags", "").split()
        info["avx512"] = sorted(f for f in flags if f.startswith("avx512"))
        info["amx"] = sorted(f for f in flags if f.startswith("amx"))
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
        info["lscpu_error"] = str(e)
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        info["MemTotal"] = next(l.split(":")[1].strip() for l in meminfo if l.startswith("MemTotal"))
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except (OSError, StopIteration):
        pass
    return info


def loadavg() -> list[str]:
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return []


# ---------------------------------------------------------------------------------------------
# Memory


def proc_status_kib(pid: int, field_name: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), or None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssSampler:
    """Samples a process's resident set size every `interval` seconds in a thread.

        with RssSampler(pid) as rss: ...
        rss.samples   # [(seconds since start, MiB), ...]
    """

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            kib = proc_status_kib(self.pid, "VmRSS")
            if kib is None:
                return
            self.samples.append((round(time.monotonic() - start, 3), kib / 1024.0))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def summary(self) -> dict:
        """First, last, min and max MiB, and the growth between the first and the last quarter
        of the run (medians of each), the figure that says whether memory stays flat."""
        mib = [m for _, m in self.samples]
        if not mib:
            return {"samples": 0}
        quarter = max(1, len(mib) // 4)
        return {
            "samples": len(mib),
            "first_mib": mib[0],
            "last_mib": mib[-1],
            "min_mib": min(mib),
            "max_mib": max(mib),
            "growth_first_to_last_quarter_mib": statistics.median(mib[-quarter:])
            - statistics.median(mib[:quarter]),
        }


# ---------------------------------------------------------------------------------------------
# The service


@dataclass
class Service:
    """detector-api started by `start_service`, with how long it took to answer 200 on /healthz."""

    svc: DetectorService
    api_key: str
    startup_s: float
    log_path: Path

    @property
    def pid(self) -> int:
        assert self.svc.process is not None
        return self.svc.process.pid

    @property
    def base_url(self) -> str:
        return self.svc.base_url

    def log_offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def requests_logged(self, start: int = 0, end: int | None = None) -> list[dict]:
        """The request lines of the service's JSON log between two byte offsets."""
        with open(self.log_path, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(max(0, end - start))
        lines = []
        for raw in data.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if "status" in entry and "latency_ms" in entry:
                lines.append(entry)
        return lines

    def stop(self) -> None:
        self.svc.stop()


def log_time(entry: dict) -> float | None:
    """The UNIX time of a JSON log line's `timestamp` (RFC 3339, UTC)."""
    from datetime import datetime
    try:
        return datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None


def completion_rate(lines: Sequence[dict], t0: float, t1: float) -> dict:
    """Successful scorings per second in the window [t0, t1] (UNIX times), from the service's log:
    each 200 counts for the fraction of its own duration (end = log time, start = end - latency)
    that lies inside the window. Whole-job counting would jump by up to a slot's worth of jobs
    depending on where the window's edges fall; fractions make the estimate smooth."""
    jobs = 0.0
    whole = 0
    for line in lines:
        if line.get("route") != "/score" or line.get("status") != 200:
            continue
        end = log_time(line)
        if end is None:
            continue
        start = end - float(line["latency_ms"]) / 1000.0
        overlap = min(end, t1) - max(start, t0)
        if overlap <= 0:
            continue
        jobs += overlap / (end - start) if end > start else 1.0
        whole += 1
    window = t1 - t0
    return {"jobs_overlapping": whole, "job_fractions": jobs, "window_s": window,
            "rps": jobs / window if window > 0 else 0.0}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def healthz_status(host: str, port: int, key: str, timeout: float = 2.0) -> int | None:
    """Status of one GET /healthz on a fresh connection, None when nothing answered."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz", headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def start_service(workdir: Path, *, max_jobs: int = 4, env: Mapping[str, str] | None = None,
                  api_key: str | None = None) -> Service:
    """Start the release detector-api with the real model (JSON log, `max_jobs` slots) and time
    process start to the first 200 on /healthz, polling every 5 ms."""
    require_release_binary(API_BINARY)
    require_model(MODEL_PATH)
    key = api_key or new_key()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    svc = DetectorService(workdir, api_key=key, env={
        "DETECTOR_MAX_CONCURRENT_JOBS": str(max_jobs),
        "DETECTOR_LOG_FORMAT": "json",
        **(env or {}),
    })
    svc.process = ManagedProcess([str(svc.binary)], name="detector-api", log_path=svc.log_path,
                                 env=svc.env, cwd=REPO_ROOT)
    started = time.monotonic()
    svc.process.start()
    deadline = started + STARTUP_TIMEOUT_S
    while True:
        status = healthz_status(svc.host, svc.port, key, timeout=1.0)
        if status == 200:
            startup = time.monotonic() - started
            break
        if not svc.process.alive:
            raise RuntimeError(f"detector-api exited during start-up:\n{svc.process.log_tail()}")
        if time.monotonic() > deadline:
            svc.stop()
            raise RuntimeError(f"detector-api gave no 200 on /healthz in {STARTUP_TIMEOUT_S}s")
        time.sleep(0.005)
    return Service(svc=svc, api_key=key, startup_s=startup, log_path=svc.log_path)


# ---------------------------------------------------------------------------------------------
# The edge


@dataclass
class Edge:
    nginx: Nginx
    ca_cert: Path

    @property
    def url(self) -> str:
        """https://detector.test:PORT (connect to 127.0.0.1, SNI and Host keep the name)."""
        return f"https://{EDGE_HOSTNAME}:{self.nginx.https_port}"

    def access_entries(self) -> list[dict]:
        from harness.nginx import parse_access_line
        return [e for e in map(parse_access_line, self.nginx.access_lines()) if e]

    def stop(self) -> None:
        self.nginx.stop()


def start_edge_for(service: Service, workdir: Path, *, worker_processes: int = 2,
                   overrides: Mapping[str, str] | None = None) -> Edge:
    """nginx rendered from the repo's templates (production values from nginx/edge.env) in front
    of `service`, with TLS from a throwaway CA. Two workers, as the stock image's `auto` gives on
    two cores."""
    workdir = Path(workdir)
    ca = make_ca(workdir / "ca")
    # RSA, like a default Let's Encrypt certificate (and the ops tests' edge).
    cert = issue_server_cert(ca, workdir / "cert", EDGE_HOSTNAME, key_type="rsa")
    nginx = start_edge(workdir / "edge", upstream=service.svc.address, cert=cert,
                       hostname=EDGE_HOSTNAME, overrides=overrides,
                       worker_processes=worker_processes)
    return Edge(nginx=nginx, ca_cert=ca.cert)


# ---------------------------------------------------------------------------------------------
# detectorctl bench


def ctl_bench(url: str, key: str, *, concurrency: int, duration: float | None = None,
              requests: int | None = None, text_file: Path = TEXT_128,
              ca_file: Path | None = None, connect_to: str | None = None,
              timeout_secs: int = 120, nice: int = 0) -> dict:
    """Run `detectorctl bench --json` and return its report (see crates/detectorctl/src/bench.rs).
    `duration` is rounded up to whole seconds, the CLI's unit."""
    require_release_binary(CTL_BINARY)
    argv = [str(CTL_BINARY), "bench", "--url", url, "--concurrency", str(concurrency),
            "--text-file", str(text_file), "--json", "--no-progress",
            "--timeout-secs", str(timeout_secs)]
    if duration is not None:
        argv += ["--duration", str(max(1, int(round(duration))))]
    if requests is not None:
        argv += ["--requests", str(requests)]
    if ca_file is not None:
        argv += ["--ca-file", str(ca_file)]
    if connect_to is not None:
        argv += ["--connect-to", connect_to]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), KEY_ENV: key}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, preexec_fn=(lambda: os.nice(nice)) if nice else None)
    try:
        stdout, stderr = process.communicate(timeout=(duration or 0) + timeout_secs + 60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"detectorctl bench failed ({process.returncode}):\n{stderr}\n{stdout}")
    report = json.loads(stdout)
    return report


# ---------------------------------------------------------------------------------------------
# Helper processes of this directory (open-loop generator, /healthz prober)


def start_helper(script: str, args: Sequence[str], out: Path, key: str,
                 log_dir: Path, nice: int = 0) -> subprocess.Popen:
    """Run bench/<script> with `args` as its own process (so its timing is not disturbed by this
    one's threads); its result JSON goes to `out`."""
    env = {**os.environ, KEY_ENV: key}
    log = open(Path(log_dir) / f"{Path(script).stem}-{out.stem}.log", "ab")
    return subprocess.Popen([sys.executable, str(BENCH_DIR / script), *args, "--out", str(out)],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)


def wait_helper(process: subprocess.Popen, out: Path, timeout: float) -> dict:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise RuntimeError(f"{process.args} did not finish within {timeout:.0f}s")
    if code != 0:
        raise RuntimeError(f"{process.args} exited with {code}")
    return json.loads(out.read_text())


# ---------------------------------------------------------------------------------------------
# Results


def write_json(path: Path, data: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


def build_info() -> dict:
    """Which build was measured: the commit checked out and the binaries' modification times (a
    rebuild between runs shows here)."""
    info: dict = {}
    try:
        info["git_head"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                                          capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    for binary in (API_BINARY, CTL_BINARY):
        try:
            info[binary.name + "_mtime_utc"] = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(binary.stat().st_mtime))
        except OSError:
            pass
    return info


def result_header(benchmark: str, args: object) -> dict:
    return {
        "benchmark": benchmark,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build": build_info(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_info(),
    }


def add_common_args(parser, *, duration: float) -> None:
    parser.add_argument("--out", type=Path, required=True, help="result JSON to write")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="logs and temporary files (default: next to --out)")
    parser.add_argument("--duration", type=float, default=duration,
                        help="seconds of each measured phase")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny bounded run that only checks the plumbing (CI)")


def workdir_for(args) -> Path:
    workdir = args.workdir or Path(args.out).with_suffix("")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def cleanup() -> None:
    stop_all()
