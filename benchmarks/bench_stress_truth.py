"""Truth under stress (issue 11): the abort watch's cost per check, a plan's overrun on an
overloaded target, and HTTP latency under a WebSocket flood with the generator-health flag.

    .venv/bin/python benchmarks/bench_stress_truth.py watch              # seconds
    .venv/bin/python benchmarks/bench_stress_truth.py overrun --plan 10  # ~plan + grace
    .venv/bin/python benchmarks/bench_stress_truth.py flood              # ~15 s

``watch`` times one check of the abort watch at 1M recorded rows: the old path (every row
read again: ``recorder.snapshot()`` + ``ThresholdWatch.check``) and the incremental one
(``recorder.since`` + ``add`` + ``poll``) with 1,000 new rows per check (250 ms at 4k req/s).
``overrun`` and ``flood`` print JSON (run them with ``PYTHONPATH`` on another checkout for a
before figure: they cope with an engine that has no ``drain_grace`` or ``meta["generator"]``).
Everything talks to a reference target on 127.0.0.1 started here. ``--write`` appends to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("RESULTS.md")
THRESHOLDS = ("p95 < 300ms", "error_rate < 1%", "p99(GET /health) < 1s")


def bench_watch(rows: int, new: int, repeat: int) -> dict[str, Any]:
    import polars as pl

    from taskforge_perf.engine.recorder import HttpRecorder
    from taskforge_perf.threshold_eval import ThresholdWatch
    from taskforge_perf.thresholds import Threshold

    checks = [Threshold.parse(t, abort_on_fail=True) for t in THRESHOLDS]
    rec = HttpRecorder()
    eps = ("GET /health", "POST /tasks generate-pdf", "POST /tasks resize-image")

    def fill(n: int, base: int) -> None:
        for i in range(base, base + n):
            t = i * 250_000
            rec.record(
                t,
                t,
                t + 1_000_000 + (i % 977) * 10_000,
                200,
                None,
                10,
                10,
                eps[i % 3],
                "GET",
                "u",
                "load",
                None,
            )

    fill(rows, 0)
    old, inc = [], []
    watch = ThresholdWatch(checks)
    seen = 0
    watch.add(rec.since(seen))
    seen = rec.rows
    base = rows
    # The two paths in separate loops: the old one's 1M-row temporaries would otherwise leave
    # collector and allocator work to the incremental one's timing.
    for _ in range(repeat):
        fill(new, base)
        base += new
        t0 = time.perf_counter()
        fresh = rec.since(seen)
        seen += fresh.height
        watch.add(fresh.filter(pl.col("t_start") >= 0))
        watch.poll(elapsed_s=base / 4000)
        inc.append(time.perf_counter() - t0)
    for _ in range(repeat):
        fill(new, base)
        base += new
        t0 = time.perf_counter()
        frame = rec.snapshot().filter(pl.col("t_start") >= 0)
        ThresholdWatch(checks).check(frame, None, elapsed_s=base / 4000)
        old.append(time.perf_counter() - t0)
    return {
        "rows": rows,
        "new_rows_per_check": new,
        "old_ms_median": statistics.median(old) * 1e3,
        "incremental_ms_median": statistics.median(inc) * 1e3,
    }


async def _overrun(plan_s: float, rate: float) -> dict[str, Any]:
    import polars as pl

    import taskforge_perf as tfp
    from taskforge_perf.mix import Endpoint, task_endpoint

    mix = tfp.RequestMix(
        [Endpoint("GET /health", "GET", "/health", auth=False), task_endpoint("generate-pdf")]
    )
    async with tfp.ReferenceTarget(
        seed=7, max_concurrency=2, service_time=0.02, hash_iterations=1000
    ) as target:
        t0 = time.perf_counter()
        tester = tfp.LoadTester(
            target, tfp.UserPool(count=5, email_prefix="overrun"), mix, seed=7, max_in_flight=200
        )
        run = await tester.run(duration=plan_s, rate=rate)
        wall = time.perf_counter() - t0
    load = run.load_events()
    err = pl.col("error").cast(pl.String)
    dropped = load.filter(err == "dropped")
    end = run.meta["load_start_ns"] + plan_s * 1e9
    started_late = load.filter((err.is_null() | (err != "dropped")) & (pl.col("t_start") > end + 2e6)).height
    return {
        "plan_s": plan_s,
        "rate": rate,
        "load_duration_s": round(run.meta["duration_s"], 2),
        "overrun_s": round(run.meta["duration_s"] - plan_s, 2),
        "run_wall_s_incl_setup": round(wall, 2),
        "requests_started_after_plan_end": started_late,
        "cancelled": load.filter(err == "cancelled").height,
        "dropped": dropped.height,
        "dropped_endpoints": sorted(dropped["endpoint"].cast(pl.String).unique().to_list()),
        "dropped_users": dropped["user"].n_unique(),
    }


async def _flood(garbage: float, sockets: int) -> dict[str, Any]:
    import polars as pl

    import taskforge_perf as tfp
    from taskforge_perf.mix import Endpoint

    health = tfp.RequestMix([Endpoint("GET /health", "GET", "/health", auth=False)])
    out: dict[str, Any] = {}
    for label, every, ws in (("quiet", 0.0, 0), ("flood", garbage, sockets)):
        async with tfp.ReferenceTarget(seed=8, ws_garbage_every=every, hash_iterations=1000) as target:
            tester = tfp.LoadTester(
                target, tfp.UserPool(count=4, email_prefix="flood"), health, seed=8, websockets=ws
            )
            run = await tester.run(duration=3, rate=20)
        lat = run.load_events().select(((pl.col("t_end") - pl.col("t_start")) / 1e6).median()).item()
        g = run.meta.get("generator") or {}
        out[label] = {
            "http_p50_ms": round(lat, 2),
            "ws_rows": run.ws_events.height,
            "generator_saturated": g.get("saturated", "not measured"),
            "causes": g.get("causes"),
            "lag_p99_ms": g.get("lag_p99_ms"),
            "own_lag_p99_ms": g.get("own_lag_p99_ms"),
            "reasons": g.get("reasons"),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("watch", "overrun", "flood"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--new", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--plan", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=400.0)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()
    if args.what == "watch":
        res = bench_watch(args.rows, args.new, args.repeat)
    elif args.what == "overrun":
        res = asyncio.run(_overrun(args.plan, args.rate))
    else:
        res = asyncio.run(_flood(0.001, 40))
    res["load_average"] = [round(x, 2) for x in load]
    print(json.dumps(res, indent=2))
    if args.write:
        import taskforge_perf

        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(
                f"\n## Truth under stress: {args.what} — {stamp}\n\nMachine: {os.cpu_count()} cores, "
                f"Python {platform.python_version()}; package {taskforge_perf.__file__}; "
                f"`benchmarks/bench_stress_truth.py {' '.join(sys.argv[1:])}`\n\n```\n"
                f"{json.dumps(res, indent=2)}\n```\n"
            )


if __name__ == "__main__":
    main()
