"""Truth under stress (issue 11): the plan's end is the end, dropped rows name what was planned,
and the generator's own saturation is measured and flagged. Real reference target on 127.0.0.1."""

from __future__ import annotations

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.engine.monitor import Snapshot
from taskforge_perf.live import format_snapshot
from taskforge_perf.mix import Endpoint, task_endpoint

FAST = {"hash_iterations": 1000}
SLACK_NS = 2_000_000  # engine.http.END_SLACK_NS


async def test_open_plan_far_above_capacity_ends_within_the_grace() -> None:
    # ~20 req/s of capacity (1 slot x 50 ms) under 200 req/s: the in-flight cap fills at once and
    # the queue behind it grows for the whole plan.
    plan_s, grace = 2.0, 0.5
    snaps: list[Snapshot] = []
    async with tfp.ReferenceTarget(seed=31, max_concurrency=1, service_time=0.05, **FAST) as target:
        t = tfp.Target(target.base_url, request_timeout=30)
        mix = tfp.RequestMix(
            [Endpoint("GET /health", "GET", "/health", auth=False), task_endpoint("generate-pdf")]
        )
        users = tfp.UserPool(count=3, email_prefix="drain")
        tester = tfp.LoadTester(
            t,
            users,
            mix,
            max_in_flight=20,
            seed=31,
            drain_grace=grace,
            listeners=[snaps.append],
            monitor_interval=0.1,
        )
        run = await tester.run(duration=plan_s, rate=200)
    meta = run.meta
    end = meta["load_start_ns"] + int(plan_s * 1e9)
    # Wall time of the load, from the run's own clock: plan + grace (+ the cancellation itself).
    assert meta["load_end_ns"] - meta["load_start_ns"] <= (plan_s + grace + 0.25) * 1e9, meta["duration_s"]
    load = run.load_events()
    stats = meta["phases"]["load"]
    assert stats["planned"] == 400 == load.height  # every planned arrival is a row
    err = pl.col("error").cast(pl.String)
    started = load.filter(err.is_null() | (err != "dropped"))
    assert started["t_start"].max() <= end + SLACK_NS  # no request starts after the plan's end
    # Requests still in flight when the grace ran out were cut: cancelled, ending after the grace.
    cancelled = load.filter(err == "cancelled")
    assert cancelled.height > 0
    assert cancelled["t_end"].min() >= end + int(grace * 1e9) - 50_000_000
    # Dropped rows: never sent, with the endpoint and user they were planned for.
    dropped = load.filter(err == "dropped")
    assert dropped.height == stats["dropped"] > 100
    assert set(dropped["endpoint"].cast(pl.String).unique()) == {"GET /health", "POST /tasks generate-pdf"}
    assert set(dropped["user"].unique()) <= {u.email for u in users}
    assert dropped["t_intended"].max() < end
    # Meanwhile the live view said so.
    draining = [s for s in snaps if s.draining > 0]
    assert draining, [(s.elapsed_s, s.in_flight) for s in snaps[-5:]]
    assert "draining" in format_snapshot(draining[0])


def test_drain_grace_is_validated() -> None:
    for bad in (-1, float("nan"), float("inf"), "5", True):
        with pytest.raises(tfp.ConfigError, match="drain_grace"):
            tfp.LoadTester("http://127.0.0.1:9", tfp.UserPool(count=1), drain_grace=bad)  # type: ignore[arg-type]
