"""Scaling out: 1 vs 2 processes and a Dask LocalCluster, open model against nginx.

Run from the project root with the project's venv::

    .venv/bin/python benchmarks/bench_scale.py              # ~1 min, appends RESULTS.md
    .venv/bin/python benchmarks/bench_scale.py --rate 2000 --seconds 3 --no-save

For each configuration (in its own child process, one after the other, nginx from bench_engine.py
serving TaskForge-shaped answers on 127.0.0.1, 1 worker pinned to core 1):

- ``1 process``: ``LoadTester(...)``, the default in-process runner;
- ``2 processes``: ``LoadTester(..., processes=2)``;
- ``Dask 2 workers``: ``LoadTester(..., runner=DaskRunner(client))`` on a ``LocalCluster(2)``.

Figures per run: planned vs recorded arrivals (the exact schedule), achieved rate of started
requests, p99 start lateness (t_start - t_intended), CPU-µs per request of the shards during the
load (from the health frame: process CPU share x interval, summed over the shards), and the parent
process's CPU over the whole run. Loopback only; nginx is stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "RESULTS.md"


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    """One run in this process; figures as a dict."""
    import polars as pl

    import taskforge_perf as tfp

    plan = tfp.StressPlan.constant(cfg["seconds"], rate=cfg["rate"])
    users = tfp.UserPool(count=20)
    kw: dict[str, Any] = {"save_dir": tempfile.mkdtemp(prefix="bench-scale-")}
    cluster = client = None
    if cfg["kind"] == "dask":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        kw["runner"] = tfp.DaskRunner(client, shared_folder=True)
    elif cfg["kind"] == "processes":
        kw["processes"] = cfg["processes"]
    tester = tfp.LoadTester(tfp.Target(cfg["url"]), users, tfp.RequestMix.taskforge(), seed=1, **kw)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    run = tester.run_sync(plan, name=cfg["kind"])
    wall = time.perf_counter() - t0
    parent_cpu = time.process_time() - cpu0
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()
    ev = run.events.filter(pl.col("phase") == plan.phases[0].name)
    started = ev.filter(pl.col("error").is_null() | (pl.col("error") != "dropped"))
    late = ((started["t_start"] - started["t_intended"]) / 1e6).quantile(0.99)
    h = run.health.filter(pl.col("phase") == plan.phases[0].name)
    load_cpu = float((h["cpu"] * h["interval_s"]).sum()) if h.height else float("nan")
    span = (started["t_start"].max() - started["t_start"].min()) / 1e9 if started.height > 1 else 0.0
    return {
        "kind": cfg["kind"],
        "workers": run.meta["workers"],
        "planned": len(list(plan.arrival_times())),
        "rows": ev.height,
        "started": started.height,
        "errors": int(ev["error"].is_not_null().sum()),
        "rate": started.height / span if span else 0.0,
        "late_p99_ms": late,
        "cpu_us_per_req": load_cpu / max(started.height, 1) * 1e6,
        "parent_cpu_s": parent_cpu,
        "wall_s": wall,
        "saturated": run.meta["generator"]["saturated"],
        "rusage_children_s": resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
        + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=4000, help="planned total req/s (default 4000)")
    ap.add_argument("--seconds", type=float, default=5, help="seconds of load per run (default 5)")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--no-save", action="store_true", help="print only; do not append RESULTS.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    from bench_engine import Nginx, ensure_nginx, machine

    nginx = Nginx(ensure_nginx())
    nginx.start()
    configs = [
        {"kind": "in-process", "processes": 1, "label": "1 process", "rate": args.rate},
        # The load one shard of two carries, alone: sharding's own cost is the difference per request.
        {"kind": "in-process", "processes": 1, "label": "1 process, half rate", "rate": args.rate / 2},
        {"kind": "processes", "processes": 2, "label": "2 processes", "rate": args.rate},
    ]
    if not args.no_dask:
        configs.append({"kind": "dask", "processes": 2, "label": "Dask LocalCluster(2)", "rate": args.rate})
    rows = []
    try:
        for cfg in configs:
            cfg.update(url=nginx.url, seconds=args.seconds)
            out = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(cfg)],
                capture_output=True,
                text=True,
                timeout=300,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{cfg['kind']} failed")
            res = json.loads(out.stdout.strip().splitlines()[-1])
            print(res, file=sys.stderr)
            rows.append({**res, "label": cfg["label"], "rate_planned": cfg["rate"]})
    finally:
        nginx.stop()
    m = machine()
    base, half = rows[0]["cpu_us_per_req"], rows[1]["cpu_us_per_req"]
    lines = [
        f"\n## Scaling out: 1 vs 2 processes vs Dask LocalCluster(2), {args.rate:g} req/s "
        f"({dt.date.today()}, bench_scale.py)\n",
        f"Machine: {m['nproc']} cores, {m['cpu']}, Python {m['python']}; load average "
        f"{os.getloadavg()[0]:.1f} on 2 cores at the end (the benchmark's own processes count ~1-1.5; "
        "more means other jobs shared the machine): read ratios, not absolutes. "
        f"Open model for {args.seconds:g} s, TaskForge mix, 20 users, nginx (1 worker, core 1) with "
        "TaskForge-shaped answers; shards unpinned. CPU-µs/request: the shards' process CPU during the "
        "load (health frame) over the requests started; 'vs 1 process' compares with the same total "
        "rate in one process, 'vs same load' with one process carrying one shard's load (half the rate).\n",
        "| runner | planned req/s | planned | rows | rate held (req/s) | p99 start lateness | "
        "CPU-µs/request | vs 1 process | vs same load | parent CPU (whole run) | saturated |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = r["cpu_us_per_req"]
        lines.append(
            f"| {r['label']} | {r['rate_planned']:,.0f} | {r['planned']:,} | {r['rows']:,} | "
            f"{r['rate']:,.0f} | {r['late_p99_ms']:.2f} ms | {cpu:.1f} | "
            f"{(cpu / base - 1) * 100:+.1f}% | {(cpu / half - 1) * 100:+.1f}% | "
            f"{r['parent_cpu_s']:.2f} s | {r['saturated']} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        with RESULTS.open("a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
