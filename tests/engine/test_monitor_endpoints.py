"""The live Snapshot's per-endpoint figures agree with the run's rows (reference target, 127.0.0.1)."""

from __future__ import annotations

import polars as pl

import taskforge_perf as tfp
from taskforge_perf.mix import Endpoint, task_endpoint
from taskforge_perf.schema import TESTER_SIDE_KINDS

FAST = {"hash_iterations": 1000}


async def test_snapshot_endpoints_count_every_load_row_and_its_target_errors() -> None:
    snaps: list[tfp.Snapshot] = []
    async with tfp.ReferenceTarget(seed=41, error_rate="GET /health=0.3", **FAST) as target:
        mix = tfp.RequestMix(
            [Endpoint("GET /health", "GET", "/health", auth=False), task_endpoint("generate-pdf")]
        )
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=3, email_prefix="monitor"),
            mix,
            seed=41,
            save_dir=None,  # no flush to parts: the monitor sees every buffered row
            listeners=[snaps.append],
            monitor_interval=0.1,
            live=False,
        )
        run = await tester.run(duration=2.0, rate=100)
    final = snaps[-1]
    load = run.load_events()
    want = {
        r["endpoint"]: (r["n"], r["errors"])
        for r in load.group_by(pl.col("endpoint").cast(pl.String))
        .agg(
            pl.len().alias("n"),
            pl.col("error")
            .cast(pl.String)
            .is_in(TESTER_SIDE_KINDS)
            .not_()
            .and_(pl.col("error").is_not_null())
            .sum()
            .alias("errors"),
        )
        .to_dicts()
    }
    got = {k: (n, e) for k, (n, e, _) in final.endpoints.items()}
    assert got == want  # setup/teardown auth rows are not endpoints of the load
    assert want["GET /health"][1] > 0  # the injected 5xx are target-side errors
    # Some snapshot during the load had an answered-row p95 per endpoint and a response time.
    assert any(s.approx_resp_p95_ms is not None for s in snaps)
    assert any(p is not None for s in snaps for (_, _, p) in s.endpoints.values())
