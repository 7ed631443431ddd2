"""Calibration of ``tfp.compare``: A/A false alarms, power and interval coverage (issue 13).

Monte Carlo over synthetic runs with the engine's exact HTTP schema (``synthetic_events`` with five
equally weighted endpoints, then ``synthetic_noise.with_process``): i.i.d. latencies, a machine-wide
slow factor with a 2 s correlation ("autocorrelated"), GC-like pauses ("gc") and a 5% run-to-run
factor ("run_effect"); 60 to 20,000 requests per endpoint; one or three runs per side. Each
replication is one comparison (one Holm family); the statistics are the very functions ``compare``
calls (``side_stats`` and ``gate_table``), run on many replications at once with a ``rep`` key.

    python benchmarks/compare_calibration.py --quick          # seconds: structure only
    python benchmarks/compare_calibration.py                  # 500 reps a cell (+-2% at 5%), long
    python benchmarks/compare_calibration.py --reps 200 --write
    python benchmarks/compare_calibration.py --old /tmp/old_compare.py   # the pre-issue-13 compare

``--old FILE`` evaluates a previous ``compare`` module (e.g. ``git show 23feb63:taskforge_perf/
compare.py > /tmp/old_compare.py``) on the same frames: its ``passed`` and ``verdict()`` FAIL rates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from taskforge_perf.compare_stats import GateParams, family_verdicts, gate_table, side_stats
from taskforge_perf.synthetic import DEFAULT_ENDPOINTS, synthetic_events
from taskforge_perf.synthetic_noise import with_process

ENDPOINTS = tuple(replace(e, weight=1.0) for e in DEFAULT_ENDPOINTS)
SLOW = ENDPOINTS[3].name  # the endpoint a power cell slows down
KEYS = ["rep", "endpoint"]
MAX_ROWS = 1_500_000  # rows per side held at once


def frames(reps: range, n: int, process: str, side: int, run: int, slow: float) -> pl.DataFrame:
    """One run of each replication in ``reps`` (a ``rep`` column added), ``n`` rows per endpoint."""
    parts = []
    for r in reps:
        seed = 1 + r * 1_009 + side * 101 + run * 11 + n
        ev = synthetic_events(
            5 * n, seed=seed, endpoints=ENDPOINTS, slowdown={SLOW: slow} if slow != 1 and side else None
        )
        parts.append(with_process(ev, process=process, seed=seed).with_columns(rep=pl.lit(r, pl.Int32)))
    return pl.concat(parts)


def cell(n: int, process: str, runs: int, slow: float, reps: int, old: Any = None) -> dict[str, float]:
    """Rates over ``reps`` comparisons: failed / passed / inconclusive, coverage, and the old compare."""
    chunk = max(1, MAX_ROWS // (5 * n * runs))
    verdicts: list[str] = []
    cov = [0, 0]
    insufficient = [0, 0]
    old_not_passed = old_fail = 0
    old_cov = [0, 0]
    params = GateParams()
    truth = {e.name: 0.0 for e in ENDPOINTS} | ({SLOW: slow - 1} if slow != 1 else {})
    for start in range(0, reps, chunk):
        rr = range(start, min(reps, start + chunk))
        b = [frames(rr, n, process, 0, j, slow) for j in range(runs)]
        c = [frames(rr, n, process, 1, j, slow) for j in range(runs)]
        t = gate_table(
            [side_stats(f, KEYS, ["p95"], params.batches) for f in b],
            [side_stats(f, KEYS, ["p95"], params.batches) for f in c],
            KEYS,
            ["p95"],
            params,
            family=["rep"],
        )
        verdicts += family_verdicts(t, ["rep"])["verdict"].to_list()
        for row in t.iter_rows(named=True):
            insufficient[1] += 1
            if row["p95_rel_ci_low"] is None:
                insufficient[0] += 1
                continue
            cov[1] += 1
            cov[0] += row["p95_rel_ci_low"] <= truth[str(row["endpoint"])] <= row["p95_rel_ci_high"]
        if old is not None:
            oc = old.compare(pl.concat(b), pl.concat(c), by=KEYS)
            bad = oc.table().filter(pl.col("verdict") == "regressed")["rep"].unique()
            old_not_passed += bad.len()
            old_fail += oc.regressions(0.10)["rep"].unique().len()
            for row in oc.table().iter_rows(named=True):  # its 95% interval of the p95 change
                if row["p95_rel_ci_low"] is not None:
                    old_cov[1] += 1
                    old_cov[0] += (
                        row["p95_rel_ci_low"] <= truth[str(row["endpoint"])] <= row["p95_rel_ci_high"]
                    )
    k = len(verdicts)
    out = {v: sum(x == v for x in verdicts) / k for v in ("failed", "passed", "inconclusive")}
    out["coverage"] = cov[0] / cov[1] if cov[1] else float("nan")
    out["insufficient"] = insufficient[0] / max(insufficient[1], 1)
    if old is not None:
        out["old_not_passed"] = old_not_passed / k
        out["old_fail"] = old_fail / k
        out["old_coverage"] = old_cov[0] / old_cov[1] if old_cov[1] else float("nan")
    return out


def pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=500, help="comparisons per cell (500: +-2%% at 5%%)")
    ap.add_argument("--quick", action="store_true", help="a few reps and sizes: checks the script runs")
    ap.add_argument("--old", default=None, help="a previous compare.py to evaluate on the same frames")
    ap.add_argument("--write", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    ap.add_argument("--sizes", default="60,300,2000,20000", help="requests per endpoint per run")
    args = ap.parse_args(argv)
    reps = 8 if args.quick else args.reps
    sizes = [60, 2000] if args.quick else [int(s) for s in args.sizes.split(",")]
    old = None
    if args.old:
        spec = importlib.util.spec_from_file_location("old_compare", args.old)
        assert spec and spec.loader
        old = importlib.util.module_from_spec(spec)
        sys.modules["old_compare"] = old
        spec.loader.exec_module(old)
    t0 = time.perf_counter()
    lines = [
        f"## compare calibration ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {reps} comparisons a cell)",
        "",
        "Five endpoints, one Holm family per comparison, gate p95 (+10% allowed, 1% tolerance) and error "
        "rate (+1 pt allowed), alpha 5%. 'failed' on A/A rows is the false-alarm rate; on power rows the "
        "detection rate. Coverage: the 90% interval of the p95 ratio contains the truth (tests with "
        "enough data). " + ("'old': the previous compare on the same frames." if old else ""),
        "",
    ]
    head = (
        "| process | runs/side | change | n/endpoint | failed | passed | inconclusive | coverage "
        "| insufficient |"
    )
    sep = "|---|---|---|---|---|---|---|---|---|"
    if old:
        head += " old passed=False | old verdict FAIL | old coverage (95%) |"
        sep += "---|---|---|"
    lines += [head, sep]
    cells: list[tuple[str, int, float, int]] = []
    for process in ("iid", "autocorrelated", "gc", "run_effect"):
        cells += [(process, 1, 1.0, n) for n in sizes]
    cells += [("run_effect", 3, 1.0, n) for n in sizes]
    power_sizes = sizes if args.quick else [300, 2000, 5000, 10000, 20000]
    cells += [("iid", 1, 1.3, n) for n in power_sizes]
    cells += [("iid", 1, 1.1, n) for n in power_sizes]
    cells += [("autocorrelated", 1, 1.3, n) for n in power_sizes]
    cells += [("run_effect", 3, 1.3, n) for n in power_sizes]
    for process, runs, slow, n in cells:
        t1 = time.perf_counter()
        r = cell(n, process, runs, slow, reps, old)
        change = "A/A" if slow == 1 else f"+{slow - 1:.0%} p95 on one"
        row = (
            f"| {process} | {runs} | {change} | {n:,} | {pct(r['failed'])} | {pct(r['passed'])} | "
            f"{pct(r['inconclusive'])} | {pct(r['coverage'])} | {pct(r['insufficient'])} |"
        )
        if old:
            row += f" {pct(r['old_not_passed'])} | {pct(r['old_fail'])} | {pct(r['old_coverage'])} |"
        lines.append(row)
        print(row, f"({time.perf_counter() - t1:.0f} s)", file=sys.stderr, flush=True)
    lines += ["", f"Total {time.perf_counter() - t0:.0f} s.", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        res = Path(__file__).resolve().parent / "RESULTS.md"
        with res.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
