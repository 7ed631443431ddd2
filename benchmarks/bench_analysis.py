"""Speed of the analysis layer on synthetic runs; appends a dated section to benchmarks/RESULTS.md.

Run: ``.venv/bin/python benchmarks/bench_analysis.py [--rows 10000000] [--no-write]``.
Goals (issue 7): summary() + by_user() over 10M rows <= 1 s; compare() of two 1M-row runs,
intervals included, <= 3 s. Each figure is the best and the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from taskforge_perf import analysis
from taskforge_perf.compare import compare
from taskforge_perf.synthetic import synthetic_events

RESULTS = Path(__file__).with_name("RESULTS.md")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return min(runs), statistics.median(runs)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--compare-rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    ev = synthetic_events(args.rows, seed=1, users=100)
    gen_s = time.perf_counter() - t0
    s_best, s_med = timed(lambda: (analysis.summary(ev), analysis.by_user(ev)), args.repeat)
    one_best, _ = timed(lambda: analysis.summary(ev), args.repeat)
    lazy_best, _ = timed(lambda: analysis.summary(ev.lazy()), max(2, args.repeat // 2))
    spec_best, _ = timed(lambda: analysis.percentile_spectrum(ev), 2)
    tl_best, _ = timed(lambda: analysis.timeline(ev), 2)
    b = synthetic_events(args.compare_rows, seed=1)
    c = synthetic_events(args.compare_rows, seed=2, slowdown={"POST /tasks resize-image": 1.3})
    c_best, c_med = timed(lambda: compare(b, c), args.repeat)
    load_after = os.getloadavg()

    m = args.rows / 1e6
    lines = [
        f"- summary() + by_user(), {m:g}M rows x 5 endpoints / 100 users: best {s_best:.3f} s, "
        f"median {s_med:.3f} s (goal <= 1 s)",
        f"- summary() alone: best {one_best:.3f} s; from a LazyFrame: best {lazy_best:.3f} s",
        f"- percentile_spectrum() (50 levels, latency + response time): {spec_best:.3f} s; "
        f"timeline() 1 s windows per endpoint: {tl_best:.3f} s",
        f"- compare() of two {args.compare_rows / 1e6:g}M-row runs with order-statistic intervals "
        f"(and both spectra): best {c_best:.3f} s, median {c_med:.3f} s (goal <= 3 s)",
        f"- synthetic_events({m:g}M): {gen_s:.2f} s (not part of the goals)",
        f"- load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        "(other processes shared the machine when above ~0.5)",
    ]
    print("\n".join(lines))
    if args.no_write:
        return
    head = (
        f"\n## Analysis layer — {dt.date.today().isoformat()}\n\n"
        f"Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, "
        f"Python {platform.python_version()}, "
        f"Polars {pl.__version__}. Exact quantiles, linear interpolation; best and median of "
        f"{args.repeat} runs (`benchmarks/bench_analysis.py`).\n\n"
    )
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
