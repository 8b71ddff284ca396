#!/usr/bin/env python3
"""Plots of a results directory written by bench/run-all, as SVG files beside the results:

- latency.svg: /score latency percentiles straight to the service and through nginx + TLS (cap 4,
  concurrency 4), and the distribution (CDF) of refusal and /healthz latencies under overload.
- goodput.svg: goodput against offered load (open loop), with the capacity and the ideal.
- caps.svg: throughput and median latency against the slot cap.
- rss.svg: the service's resident memory over the overload run.

    bench/plot.py bench/results/2026-12-03      (needs matplotlib: Debian python3-matplotlib)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Figures are text-searchable and small as SVG; fonts stay text, not paths.
plt.rcParams.update({"svg.fonttype": "none", "figure.dpi": 100, "font.size": 9,
                     "svg.hashsalt": "detector-stack"})


def reps(results: Path) -> list[Path]:
    return sorted(p for p in results.iterdir() if p.is_dir() and p.name.startswith("rep-"))


def load_all(results: Path, name: str) -> list[dict]:
    out = []
    for rep in reps(results):
        path = rep / f"{name}.json"
        if path.is_file():
            out.append(json.loads(path.read_text()))
    return out


def cdf(ax, values, label, **kw) -> None:
    if not values:
        return
    xs = sorted(values)
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step(xs, ys, where="post", label=f"{label} (n={len(xs)})", **kw)


def plot_latency(results: Path, out: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    quantiles = ["p50_ms", "p90_ms", "p99_ms", "max_ms"]
    for t in load_all(results, "throughput"):
        for path, marker, color in (("direct", "o", "tab:blue"), ("edge", "s", "tab:orange")):
            for r in t["rounds"]:
                if r["path"] == path and r["report"]["latency_200"]:
                    lat = r["report"]["latency_200"]
                    left.plot(range(len(quantiles)), [lat[q] for q in quantiles], marker=marker,
                              color=color, alpha=0.6, linewidth=0.8)
    left.plot([], [], "o-", color="tab:blue", label="direct to detector-api")
    left.plot([], [], "s-", color="tab:orange", label="through nginx + TLS")
    left.set_xticks(range(len(quantiles)), ["p50", "p90", "p99", "max"])
    left.set_ylabel("latency of a 200, ms")
    left.set_title("/score, 128 tokens, cap 4, 4 clients (each line: one round)")
    left.legend()
    left.grid(alpha=0.3)

    overloads = load_all(results, "overload")
    refusal, probe_open, probe_storm, probe_niced = [], [], [], []
    for o in overloads:
        for p in o["phases"]:
            if p["phase"] == "open-10x":
                refusal += p["raw"]["refusal_client_ms"]
                probe_open += p["raw"]["healthz_probe_ms"]
            elif p["phase"] == "open-10x-niced":
                probe_niced += p["raw"]["healthz_probe_ms"]
            elif p["phase"].startswith("storm"):
                probe_storm += p["raw"]["healthz_probe_ms"]
    cdf(right, refusal, "503 refusals, client, open loop 10x")
    cdf(right, probe_open, "/healthz probe, open loop 10x")
    cdf(right, probe_niced, "/healthz probe, open loop 10x, inference at nice 10")
    cdf(right, probe_storm, "/healthz probe, retry storm")
    right.axvline(10, color="grey", linestyle="--", linewidth=0.8)
    right.text(10, 0.02, " 10 ms target", color="grey")
    right.axhline(0.99, color="grey", linestyle=":", linewidth=0.8)
    right.set_xscale("log")
    right.set_xlabel("latency, ms (log)")
    right.set_ylabel("fraction of requests")
    right.set_title("Under overload, all repetitions pooled")
    right.legend(loc="lower right")
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "latency.svg")
    plt.close(fig)


def plot_goodput(results: Path, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    overloads = load_all(results, "overload")
    if not overloads:
        plt.close(fig)
        return
    capacities = [o["capacity_rps"] for o in overloads]
    top = 0.0
    for i, o in enumerate(overloads):
        opens = sorted((p for p in o["phases"] if p["mode"] == "open"
                        and not p["phase"].endswith("niced")),
                       key=lambda p: p["offered_rps"])
        xs = [p["offered_rps"] for p in opens]
        ys = [p["goodput_rps"] for p in opens]
        ax.plot(xs, ys, "o-", alpha=0.7, label=f"repetition {i + 1}")
        top = max([top, *xs])
        for p in o["phases"]:
            if p["phase"].endswith("niced"):
                ax.plot([p["offered_rps"]], [p["goodput_rps"]], "^", color="tab:green",
                        label="10x, inference threads at nice 10" if i == 0 else None)
            if p["mode"] == "closed":
                # The storm's offered rate is off the chart; it is drawn at the right edge.
                ax.plot([xs[-1] if xs else 1], [p["goodput_rps"]], "x", color="red", markersize=8,
                        label=(f"retry storm, {p.get('concurrency')} clients, "
                               f"~{p['offered_rps']:.0f} req/s offered") if i == 0 else None)
    cap = sorted(capacities)[len(capacities) // 2]
    low = min(p["offered_rps"] for o in overloads for p in o["phases"] if p["mode"] == "open")
    ax.plot([low, cap, top], [low, cap, cap], "--", color="grey",
            label="ideal: min(offered, capacity)")
    ax.axhline(0.95 * cap, color="red", linestyle=":", linewidth=0.8, label="95 % of capacity")
    ax.set_xscale("log")
    ax.set_xlabel("offered load, requests/s (open loop, log)")
    ax.set_ylabel("goodput, 200s per second")
    ax.set_ylim(bottom=0)
    ax.set_title("Goodput against offered load (cap 4, 128 tokens)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "goodput.svg")
    plt.close(fig)


def plot_caps(results: Path, out: Path) -> None:
    runs = load_all(results, "caps")
    if not runs:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax2 = ax.twinx()
    caps: list[int] = []
    for i, run in enumerate(runs):
        plain = [r for r in run["caps"] if not r.get("env")]
        caps = [r["cap"] for r in plain]
        ax.plot(caps, [r["steady_rps"] for r in plain], "o-", color="tab:blue", alpha=0.6,
                label="requests/s" if i == 0 else None)
        ax2.plot(caps, [r["latency_200"]["p50_ms"] if r["latency_200"] else None
                        for r in plain], "s--", color="tab:orange", alpha=0.6,
                 label="p50 latency" if i == 0 else None)
        # Variants with service environment settings (e.g. CANDLE_NUM_THREADS=1): markers only.
        for j, r in enumerate(x for x in run["caps"] if x.get("env")):
            env = " ".join(f"{k}={v}" for k, v in r["env"].items())
            ax.plot([r["cap"]], [r["steady_rps"]], "D", color="tab:green", alpha=0.8,
                    label=f"requests/s, {env}" if i == 0 and j == 0 else None)
    ax.set_xscale("log", base=2)
    ax.set_xticks(caps, [str(c) for c in caps])
    ax.set_xlabel("slot cap = concurrency (2 cores)")
    ax.set_ylabel("requests/s", color="tab:blue")
    ax2.set_ylabel("p50 latency, ms", color="tab:orange")
    ax.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    ax.set_title("Jobs per core: throughput and latency by cap")
    ax.grid(alpha=0.3)
    fig.legend(loc="upper left", bbox_to_anchor=(0.1, 0.9), fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "caps.svg")
    plt.close(fig)


def plot_rss(results: Path, out: Path) -> None:
    overloads = load_all(results, "overload")
    if not overloads:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, o in enumerate(overloads):
        samples = o.get("rss_whole_run_samples") or []
        ax.plot([s[0] for s in samples], [s[1] for s in samples], linewidth=0.8,
                label=f"repetition {i + 1}")
    ax.set_xlabel("seconds into the overload run (capacity, sweep 0.5x..10x, retry storm)")
    ax.set_ylabel("RSS, MiB")
    ax.set_ylim(bottom=0)
    ax.set_title("detector-api resident memory under overload")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "rss.svg")
    plt.close(fig)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = Path(sys.argv[1])
    if os.environ.get("PLOT_FORMAT") == "png":  # for a quick look in an image viewer
        real_savefig = plt.Figure.savefig
        plt.Figure.savefig = lambda self, path, **kw: real_savefig(
            self, Path(path).with_suffix(".png"), **kw)
    for plot in (plot_latency, plot_goodput, plot_caps, plot_rss):
        plot(results, results)
    print("\n".join(str(p) for p in sorted(results.glob("*.svg")) + sorted(results.glob("*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
