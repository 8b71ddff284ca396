"""The service benchmarks (bench/) keep working: each script runs in its tiny bounded mode
(--smoke) against the real binaries and model and writes well-formed results, and the summary
reads them. Nothing here looks at timing: figures come from bench/run-all, not from CI.

The memory benchmark runs without the PyTorch reference (--no-reference): CI does not install
torch. The plots need matplotlib, which is outside the test requirements, so they are not drawn.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.procs import require_tool
from harness.service import API_BINARY, CTL_BINARY, require_model, require_release_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH = REPO_ROOT / "bench"


def run_bench(script: str, out: Path, *args: str, timeout: float = 300) -> dict:
    done = subprocess.run([sys.executable, str(BENCH / script), "--out", str(out), "--smoke",
                           *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (f"{script} exited with {done.returncode}\n"
                                  f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}")
    return json.loads(out.read_text())


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def assert_latency(summary: dict | None, where: str) -> None:
    assert summary is not None, f"{where}: no latency summary"
    for key in ("p50_ms", "p99_ms", "max_ms"):
        assert is_number(summary[key]) and summary[key] >= 0, f"{where}: {key} = {summary[key]!r}"


@pytest.fixture(scope="module")
def rep_dir(tmp_path_factory) -> Path:
    require_release_binary(API_BINARY)
    require_release_binary(CTL_BINARY)
    require_model()
    for tool in ("nginx", "openssl", "envsubst", "cargo"):
        require_tool(tool)
    return tmp_path_factory.mktemp("bench") / "rep-1"


def test_throughput_reports_both_paths(rep_dir):
    result = run_bench("throughput.py", rep_dir / "throughput.json")
    assert is_number(result["startup_s"]) and result["startup_s"] > 0
    assert {r["path"] for r in result["rounds"]} == {"direct", "edge"}
    for r in result["rounds"]:
        assert r["report"]["status"]["200"] >= 1, r["report"]
        assert r["report"]["status"]["errors"] == 0, r["report"]
        assert_latency(r["report"]["latency_200"], f"{r['path']} round")
    for path in ("direct", "edge"):
        assert is_number(result["summary"][path]["steady_rps"])
        assert_latency(result["healthz_pairs"][path], f"/healthz {path}")
    assert set(result["healthz_pairs"]["statuses"]) == {"direct 200", "edge 200"}
    assert result["machine"]["CPU(s)"]


def test_overload_reports_goodput_refusals_probe_and_memory(rep_dir):
    # A fixed capacity: the smoke run is too short to measure one.
    result = run_bench("overload.py", rep_dir / "overload.json", "--capacity", "1",
                       "--service-env", "DETECTOR_INFERENCE_NICE=5")
    assert result["service_env"] == {"DETECTOR_INFERENCE_NICE": "5"}
    phases = {p["phase"]: p for p in result["phases"]}
    assert set(phases) == {"open-10x", "storm-c40"}, phases.keys()
    open_loop = phases["open-10x"]
    assert open_loop["statuses"].get("503", 0) >= 1, open_loop["statuses"]
    assert set(open_loop["statuses"]) <= {"200", "503"}, open_loop["statuses"]
    assert open_loop["refusals_without_retry_after"] == 0
    assert_latency(open_loop["refusal_client"], "open-loop refusals")
    for p in phases.values():
        assert is_number(p["goodput_rps"]) and is_number(p["goodput_pct_of_capacity"])
        assert p["healthz_probe"]["statuses"].get("200", 0) >= 1, p["healthz_probe"]
        assert p["healthz_probe"]["errors"] == 0, p["healthz_probe"]
        assert_latency(p["healthz_probe"]["latency"], f"{p['phase']} probe")
        assert_latency(p["refusal_service"], f"{p['phase']} refusals in the service's log")
        assert p["rss"]["samples"] >= 2, p["rss"]
    assert phases["storm-c40"]["statuses"]["503"] >= 1
    assert result["rss_whole_run"]["max_mib"] > 0


def test_caps_measures_each_cap(rep_dir):
    result = run_bench("caps.py", rep_dir / "caps.json")
    assert [r["cap"] for r in result["caps"]] == [1, 2]
    assert result["caps"][1]["env"] == {"CANDLE_NUM_THREADS": "1"}
    for row in result["caps"]:
        assert is_number(row["steady_rps"])
        assert row["statuses"]["200"] >= 1, row
        assert "overload" in row and is_number(row["overload"]["offered_rps"])


def test_layout_runs_the_model_benchmark(rep_dir):
    result = run_bench("layout.py", rep_dir / "layout.json")
    layouts = {r["layout"]: r for r in result["layouts"]}
    assert set(layouts) == {"1x1", "2x1:CANDLE_NUM_THREADS=1"}
    for row in layouts.values():
        assert len(row["median_s_per_job"]) == row["jobs"]
        assert row["forwards_per_s"] > 0


def test_memory_reports_the_service_peaks(rep_dir):
    result = run_bench("memory.py", rep_dir / "memory.json", "--no-reference")
    service = result["service"]
    assert service["after_load"]["hwm_mib"] > 0
    assert service["after_one_128"]["hwm_mib"] >= service["after_load"]["hwm_mib"]
    assert service[service["all_slots_512"]]["statuses"]["200"] >= 1


def test_startup_and_summary(rep_dir):
    result = run_bench("startup.py", rep_dir / "startup.json")
    assert len(result["starts"]) == 1 and result["median_startup_s"] > 0
    # The summary reads whatever the tests above wrote into the same repetition directory.
    done = subprocess.run([sys.executable, str(BENCH / "summarize.py"), str(rep_dir.parent)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads((rep_dir.parent / "summary.json").read_text())
    expected = {"startup": "startup.median_s", "throughput": "throughput.direct_rps",
                "overload": "overload.open-10x.goodput_pct", "caps": "caps.1.steady_rps",
                "layout": "layout.1x1.forwards_per_s", "memory": "memory.service_after_load_mib"}
    for benchmark, name in expected.items():
        if (rep_dir / f"{benchmark}.json").is_file():
            assert summary[name]["n"] == 1, (name, summary.get(name))
    assert "| phase |" in (rep_dir.parent / "summary.md").read_text()
