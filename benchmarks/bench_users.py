"""Issue 18 figures: group shares, think-time KS statistics, session arrival rate, region RTT and
find_capacity against a known capacity. Appends a section to benchmarks/RESULTS.md.

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_users.py
"""

from __future__ import annotations

import asyncio
import datetime
import math
import os
import platform
import random
import time
from pathlib import Path

import polars as pl

import taskforge_perf as tfp
from taskforge_perf.mix import Endpoint, RequestMix

HEALTH = RequestMix([Endpoint("GET /health", "GET", "/health", auth=False)])
METRICS = RequestMix([Endpoint("GET /metrics", "GET", "/metrics", auth=False)])


def ks(sample: list[float], cdf: object) -> float:
    xs = sorted(sample)
    n = len(xs)
    return max(max((i + 1) / n - cdf(x), cdf(x) - i / n) for i, x in enumerate(xs))  # type: ignore[operator]


async def shares() -> str:
    groups = [
        tfp.UserGroup(name="light", users=2, mix=HEALTH, weight=1),
        tfp.UserGroup(name="heavy", users=3, mix=METRICS, weight=3),
    ]
    async with tfp.ReferenceTarget(seed=1, hash_iterations=1000) as target:
        run = await tfp.LoadTester(target, groups=groups, seed=3, live=False).run(duration=10, rate=1000)
    counts = dict(run.by_group().select("group", "count").iter_rows())
    total = sum(counts.values())
    heavy, light = counts["heavy"] / total, counts["light"] / total
    return f"group shares over {total:,} requests: heavy {heavy:.4f} (weight 0.75), light {light:.4f} (0.25)"


def think() -> str:
    rng = random.Random(42)
    e = [tfp.ThinkTime.exponential(0.5).sample(rng) for _ in range(4000)]
    u = [tfp.ThinkTime.uniform(0.1, 0.3).sample(rng) for _ in range(4000)]
    de = ks(e, lambda x: 1 - math.exp(-x / 0.5))
    du = ks(u, lambda x: min(max((x - 0.1) / 0.2, 0.0), 1.0))
    crit = 1.63 / math.sqrt(4000)
    return f"think-time KS D (4,000 draws, seed 42): exp {de:.4f}, uniform {du:.4f} (1% critical {crit:.4f})"


async def sessions() -> str:
    async def visit(s: tfp.Session) -> None:
        await s.signup()
        await s.request("GET /health")
        await s.logout()

    async with tfp.ReferenceTarget(seed=1, hash_iterations=1000) as target:
        tester = tfp.LoadTester(target, tfp.UserPool(count=1), seed=1, live=False)
        run = await tester.run(duration=10, rate=0, sessions=tfp.Sessions(visit, rate=20, seed=1))
    rows = run.events.filter(pl.col("session").is_not_null())
    n = rows["session"].n_unique()
    m = run.meta["sessions"]
    return (
        f"sessions: Poisson rate 20/s for 10 s: {n} sessions started ({n / 10:.1f}/s), "
        f"{m['completed']} completed, peak {m['peak_active']} concurrent"
    )


async def region() -> str:
    groups = [
        tfp.UserGroup(
            name="near", users=1, mix=HEALTH, region=tfp.Region(name="near", rtt=0.0, mode="relay")
        ),
        tfp.UserGroup(name="far", users=1, mix=HEALTH, region=tfp.Region(name="far", rtt=0.03, mode="relay")),
    ]
    async with tfp.ReferenceTarget(seed=1, hash_iterations=1000) as target:
        run = await tfp.LoadTester(target, groups=groups, seed=1, live=False).run(duration=5, rate=100)
    lat = (pl.col("t_end") - pl.col("t_start")) / 1e6
    q = dict(
        run.load_events()
        .group_by(pl.col("group").cast(pl.String))
        .agg(pl.concat_list(lat.quantile(0.25), lat.median()).alias("q"))
        .iter_rows()
    )
    why = tfp.Region.netem_available()
    return (
        f"relay region, rtt 30 ms: added {q['far'][0] - q['near'][0]:.2f} ms at the lower quartile, "
        f"{q['far'][1] - q['near'][1]:.2f} ms at the median; netem: {why or 'available'}"
    )


async def capacity() -> str:
    async with tfp.ReferenceTarget(
        seed=1, hash_iterations=1000, max_concurrency=50, service_time=0.25
    ) as target:
        tester = tfp.LoadTester(target, tfp.UserPool(count=2), HEALTH, seed=1, live=False)
        t0 = time.monotonic()
        r = await tfp.find_capacity(tester, ["p95 < 400ms", "error_rate < 1%"], start=50, max=2000)
    return (
        f"find_capacity, known capacity 200/s (50 slots x 0.25 s): {r!r}; wall {time.monotonic() - t0:.0f} s"
    )


async def main() -> None:
    load0 = os.getloadavg()[0]
    lines = [await shares(), think(), await sessions(), await region(), await capacity()]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"\n## Groups, sessions, regions, capacity (issue 18) — {now}\n\n"
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}; load average "
        f"{load0:.2f} before, {os.getloadavg()[0]:.2f} after; `benchmarks/bench_users.py`.\n\n"
        + "\n".join(f"- {line}" for line in lines)
        + "\n"
    )
    print(text)
    with (Path(__file__).parent / "RESULTS.md").open("a") as f:  # noqa: ASYNC230 - once, at the end
        f.write(text)


if __name__ == "__main__":
    asyncio.run(main())
