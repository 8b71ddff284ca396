#!/usr/bin/env python3
"""Summarise a results directory written by bench/run-all (rep-1/, rep-2/, ... each holding
throughput.json, overload.json, caps.json, layout.json, memory.json, startup.json): every figure
as the median over repetitions with its spread (min, max), into summary.json, summary.csv and
summary.md (the tables of docs/benchmarks.md).

    bench/summarize.py bench/results/2026-12-03
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path


def load(rep: Path, name: str) -> dict | None:
    path = rep / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def dig(data, *keys):
    for key in keys:
        if data is None:
            return None
        data = data.get(key) if isinstance(data, dict) else None
    return data


def phase(overload: dict | None, name_prefix: str) -> dict | None:
    for p in (overload or {}).get("phases", []):
        if p["phase"].startswith(name_prefix):
            return p
    return None


def metrics_of(rep: Path) -> dict[str, float | None]:
    """Every figure of one repetition, by a stable name."""
    m: dict[str, float | None] = {}
    t = load(rep, "throughput")
    if t:
        s = t["summary"]
        m["throughput.direct_rps"] = s["direct"]["steady_rps"]
        m["throughput.edge_rps"] = s["edge"]["steady_rps"]
        m["throughput.edge_over_direct"] = s["edge_over_direct_throughput"]
        m["throughput.direct_p50_ms"] = s["direct"]["p50_ms"]
        m["throughput.edge_p50_ms"] = s["edge"]["p50_ms"]
        m["throughput.direct_p99_ms"] = s["direct"]["p99_ms"]
        m["throughput.edge_p99_ms"] = s["edge"]["p99_ms"]
        m["throughput.added_p50_ms"] = s["added_p50_ms"]
        m["throughput.added_p50_pct"] = s["added_p50_pct"]
        m["throughput.nginx_own_mean_ms"] = s.get("nginx_own_mean_ms")
        m["throughput.nginx_own_mean_pct"] = s.get("nginx_own_mean_pct")
        m["throughput.healthz_added_p50_ms"] = s.get("healthz_added_p50_ms")
        m["throughput.healthz_direct_p50_ms"] = dig(t, "healthz_pairs", "direct", "p50_ms")
        m["throughput.healthz_edge_p50_ms"] = dig(t, "healthz_pairs", "edge", "p50_ms")
        added, base = s.get("healthz_added_p50_ms"), s["direct"]["p50_ms"]
        m["throughput.healthz_added_pct_of_score_p50"] = (100.0 * added / base
                                                          if added is not None and base else None)
        m["throughput.non_200"] = s["direct"]["non_200"] + s["edge"]["non_200"]
        m["startup.in_throughput_s"] = t.get("startup_s")
    o = load(rep, "overload")
    if o:
        m["overload.capacity_rps"] = o["capacity_rps"]
        for p in o["phases"]:
            # Phase names carry a dot ("open-0.5x"); metric names use dots as separators.
            key = f"overload.{p['phase'].replace('.', '_')}"
            m[f"{key}.offered_rps"] = p["offered_rps"]
            m[f"{key}.goodput_rps"] = p["goodput_rps"]
            m[f"{key}.goodput_pct"] = p["goodput_pct_of_capacity"]
            m[f"{key}.refused"] = dig(p, "statuses", "503")
            m[f"{key}.other_or_errors"] = sum(v for k, v in p["statuses"].items()
                                              if k not in ("200", "503"))
            m[f"{key}.refusals_without_retry_after"] = p.get("refusals_without_retry_after")
            m[f"{key}.refusal_client_p99_ms"] = dig(p, "refusal_client", "p99_ms")
            m[f"{key}.refusal_service_p99_ms"] = dig(p, "refusal_service", "p99_ms")
            m[f"{key}.answered_client_p99_ms"] = dig(p, "answered_client", "p99_ms")
            m[f"{key}.latency_200_p50_ms"] = dig(p, "latency_200_client", "p50_ms")
            m[f"{key}.healthz_probe_p50_ms"] = dig(p, "healthz_probe", "latency", "p50_ms")
            m[f"{key}.healthz_probe_p99_ms"] = dig(p, "healthz_probe", "latency", "p99_ms")
            m[f"{key}.healthz_service_p99_ms"] = dig(p, "healthz_service", "p99_ms")
            m[f"{key}.rss_growth_mib"] = dig(p, "rss", "growth_first_to_last_quarter_mib")
            m[f"{key}.rss_max_mib"] = dig(p, "rss", "max_mib")
            m[f"{key}.late_starts"] = p.get("late_starts")
            m[f"{key}.service_cpu_cores"] = p.get("service_cpu_cores")
        m["overload.rss_first_mib"] = dig(o, "rss_whole_run", "first_mib")
        m["overload.rss_max_mib"] = dig(o, "rss_whole_run", "max_mib")
        m["overload.rss_last_mib"] = dig(o, "rss_whole_run", "last_mib")
        m["overload.vm_hwm_mib"] = o.get("service_vm_hwm_mib")
    c = load(rep, "caps")
    if c:
        for row in c["caps"]:
            key = f"caps.{caps_key(row.get('variant', str(row['cap'])))}"
            m[f"{key}.steady_rps"] = row["steady_rps"]
            m[f"{key}.p50_ms"] = dig(row, "latency_200", "p50_ms")
            m[f"{key}.p99_ms"] = dig(row, "latency_200", "p99_ms")
            m[f"{key}.overload_goodput_pct"] = dig(row, "overload", "goodput_pct_of_capacity")
            m[f"{key}.overload_refusal_client_p99_ms"] = dig(row, "overload", "refusal_client",
                                                            "p99_ms")
            m[f"{key}.overload_healthz_probe_p99_ms"] = dig(row, "overload", "healthz_probe",
                                                           "latency", "p99_ms")
            m[f"{key}.vm_hwm_mib"] = row.get("vm_hwm_mib")
    lay = load(rep, "layout")
    if lay:
        for row in lay["layouts"]:
            key = f"layout.{caps_key(row['layout'])}"
            m[f"{key}.job_s"] = row["mean_job_s"]
            m[f"{key}.forwards_per_s"] = row["forwards_per_s"]
            m[f"{key}.vs_1x1"] = row["throughput_vs_first"]
    mem = load(rep, "memory")
    if mem:
        svc = mem["service"]
        m["memory.service_after_load_mib"] = svc["after_load"]["hwm_mib"]
        m["memory.service_after_one_128_mib"] = svc["after_one_128"]["hwm_mib"]
        worst = next((v for k, v in svc.items() if k.endswith("x512") and isinstance(v, dict)), None)
        m["memory.service_after_all_slots_512_mib"] = dig(worst, "hwm_mib")
        ref = mem.get("reference")
        if ref:
            m["memory.reference_load_s"] = ref["load_s"]
            m["memory.reference_after_load_mib"] = ref["hwm_after_load_mib"]
            m["memory.reference_after_128_mib"] = ref["hwm_after_tokens_mib"].get("128")
            m["memory.reference_after_512_mib"] = ref["hwm_after_tokens_mib"].get("512")
            m["memory.service_over_reference_128"] = mem.get("service_over_reference_128")
    st = load(rep, "startup")
    if st:
        m["startup.median_s"] = st["median_startup_s"]
        m["startup.model_load_s"] = st["median_model_load_s"]
    return m


def caps_key(variant: str) -> str:
    """A caps variant ("4" or "4:CANDLE_NUM_THREADS=1") as one dot-free metric-name part."""
    return variant.replace(".", "_").replace(":", "~")


def summarize(results: Path) -> dict[str, dict]:
    reps = sorted(p for p in results.iterdir() if p.is_dir() and p.name.startswith("rep-"))
    per_rep = [metrics_of(r) for r in reps]
    names = sorted({k for m in per_rep for k in m})
    out = {}
    for name in names:
        values = [m[name] for m in per_rep if isinstance(m.get(name), (int, float))]
        out[name] = {
            "median": statistics.median(values) if values else None,
            "min": min(values) if values else None,
            "max": max(values) if values else None,
            "n": len(values),
            "values": values,
        }
    return out


def cell(summary: dict, name: str, spec: str = ".1f") -> str:
    s = summary.get(name)
    if not s or s["median"] is None:
        return "-"
    if s["n"] == 1 or s["min"] == s["max"]:
        return format(s["median"], spec)
    return f"{format(s['median'], spec)} ({format(s['min'], spec)}–{format(s['max'], spec)})"


def markdown(summary: dict) -> str:
    c = lambda name, spec=".1f": cell(summary, name, spec)  # noqa: E731
    lines = ["<!-- section: throughput -->", "Median over repetitions (min–max).", ""]
    lines += ["| Throughput, 128 tokens, cap 4, concurrency 4 | direct | through nginx + TLS |",
              "|---|---|---|",
              f"| requests/s (steady) | {c('throughput.direct_rps', '.3f')} | {c('throughput.edge_rps', '.3f')} |",
              f"| latency p50, ms | {c('throughput.direct_p50_ms', '.0f')} | {c('throughput.edge_p50_ms', '.0f')} |",
              f"| latency p99, ms | {c('throughput.direct_p99_ms', '.0f')} | {c('throughput.edge_p99_ms', '.0f')} |",
              "",
              f"Edge/direct throughput: {c('throughput.edge_over_direct', '.3f')}. "
              f"Added p50: {c('throughput.added_p50_ms', '.1f')} ms = "
              f"{c('throughput.added_p50_pct', '.2f')} %. "
              f"GET /healthz (no inference) p50: direct {c('throughput.healthz_direct_p50_ms', '.2f')} ms, "
              f"through nginx + TLS {c('throughput.healthz_edge_p50_ms', '.2f')} ms: the edge's fixed "
              f"cost is {c('throughput.healthz_added_p50_ms', '.2f')} ms per request, "
              f"{c('throughput.healthz_added_pct_of_score_p50', '.3f')} % of the direct /score p50.", ""]
    phases = sorted({k.split(".")[1] for k in summary if k.startswith("overload.open-")
                     or k.startswith("overload.storm-")},
                    key=lambda p: (p.startswith("storm") or p.endswith("niced"),
                                   p.startswith("open"),
                                   float(p.split("-")[1].rstrip("x").replace("_", "."))
                                   if p.startswith("open") else 0))
    lines += ["<!-- section: overload -->", f"Capacity (steady requests/s, cap 4, concurrency 4): {c('overload.capacity_rps', '.3f')}.", "",
              "| phase | offered req/s | goodput req/s | goodput % of capacity | 503s | 503 without Retry-After | refusal p99 client, ms | refusal p99 in service, ms | /healthz p99 probe, ms | /healthz p99 in service, ms | RSS growth, MiB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in phases:
        k = f"overload.{p}"
        refusal_client = (c(f"{k}.refusal_client_p99_ms", ".2f") if p.startswith("open")
                          else c(f"{k}.answered_client_p99_ms", ".2f") + " (all answers)")
        lines.append(f"| {p.replace('_', '.')} | {c(k + '.offered_rps', '.2f')} | {c(k + '.goodput_rps', '.3f')} | "
                     f"{c(k + '.goodput_pct', '.1f')} | {c(k + '.refused', '.0f')} | "
                     f"{c(k + '.refusals_without_retry_after', '.0f')} | {refusal_client} | "
                     f"{c(k + '.refusal_service_p99_ms', '.3f')} | "
                     f"{c(k + '.healthz_probe_p99_ms', '.2f')} | "
                     f"{c(k + '.healthz_service_p99_ms', '.3f')} | {c(k + '.rss_growth_mib', '.1f')} |")
    lines += ["", f"RSS over the whole overload run: first {c('overload.rss_first_mib', '.0f')} MiB, "
              f"max {c('overload.rss_max_mib', '.0f')} MiB, last {c('overload.rss_last_mib', '.0f')} MiB.", ""]
    caps = sorted({k.split(".")[1] for k in summary if k.startswith("caps.")},
                  key=lambda v: ("~" in v, int(v.split("~")[0]), v))
    if caps:
        lines += ["<!-- section: caps -->", "| cap (jobs at once) | service environment | jobs per core | requests/s | p50, ms | p99, ms | goodput at 10x, % of its capacity | refusal p99 client at 10x, ms | /healthz p99 probe at 10x, ms |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for cap in caps:
            k = f"caps.{cap}"
            jobs, _, env = cap.partition("~")
            lines.append(f"| {jobs} | {('`' + env + '`') if env else 'default'} | {int(jobs) / 2:g} | {c(k + '.steady_rps', '.3f')} | {c(k + '.p50_ms', '.0f')} | "
                         f"{c(k + '.p99_ms', '.0f')} | {c(k + '.overload_goodput_pct', '.1f')} | "
                         f"{c(k + '.overload_refusal_client_p99_ms', '.2f')} | "
                         f"{c(k + '.overload_healthz_probe_p99_ms', '.2f')} |")
        lines.append("")
    layouts = sorted({k.split(".")[1] for k in summary if k.startswith("layout.")},
                     key=lambda l: ("~" in l, [int(x) for x in l.split("~")[0].split("x")]))
    if layouts:
        lines += ["<!-- section: layout -->", "| layout (jobs x threads per job) | seconds per 128-token job | forward passes/s | vs 1x1 |",
                  "|---|---|---|---|"]
        for lay in layouts:
            k = f"layout.{lay}"
            shape, _, env = lay.partition("~")
            lines.append(f"| {shape}{(' `' + env + '`') if env else ''} | {c(k + '.job_s', '.3f')} | {c(k + '.forwards_per_s', '.3f')} | "
                         f"{c(k + '.vs_1x1', '.2f')} |")
        lines.append("")
    lines += ["<!-- section: memory -->", "| peak RSS (VmHWM / ru_maxrss), MiB | detector-api | PyTorch reference |",
              "|---|---|---|",
              f"| model loaded | {c('memory.service_after_load_mib', '.0f')} | {c('memory.reference_after_load_mib', '.0f')} |",
              f"| after one 128-token scoring | {c('memory.service_after_one_128_mib', '.0f')} | {c('memory.reference_after_128_mib', '.0f')} |",
              f"| after 512 tokens (service: 4 slots at once) | {c('memory.service_after_all_slots_512_mib', '.0f')} | {c('memory.reference_after_512_mib', '.0f')} (one job) |",
              "",
              f"detector-api / reference after one 128-token scoring: {c('memory.service_over_reference_128', '.3f')}.",
              "", "<!-- section: startup -->",
              f"Start-up, process start to first 200 on /healthz: {c('startup.median_s', '.3f')} s "
              f"(model load inside it: {c('startup.model_load_s', '.3f')} s); the reference loads in "
              f"{c('memory.reference_load_s', '.1f')} s.", ""]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = Path(sys.argv[1])
    summary = summarize(results)
    (results / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    with open(results / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["metric", "median", "min", "max", "n"])
        for name, s in summary.items():
            writer.writerow([name, s["median"], s["min"], s["max"], s["n"]])
    (results / "summary.md").write_text(markdown(summary))
    print(results / "summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
