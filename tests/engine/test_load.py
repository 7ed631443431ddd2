"""The load engine against the real reference target on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.mix import Endpoint, task_endpoint

FAST = {"hash_iterations": 1000}


def load_rows(run: tfp.Run) -> pl.DataFrame:
    return run.load_events()


async def test_closed_run_records_every_request_and_matches_target_metrics() -> None:
    async with tfp.ReferenceTarget(seed=1, **FAST) as target:
        tester = tfp.LoadTester(target, tfp.UserPool(count=5), seed=1)
        run = await tester.run(duration=2, concurrency=10)
        served = await target.ametrics()
    ev = run.events
    assert ev.height == run.meta["counters"]["requests"] > 100
    assert run.meta["stopped"] == "completed"
    # Every request the tester sent is a row, and every row the target saw: compare per route.
    seen = served["taskforge_http_requests_total"]
    by_route: dict[str, float] = {}
    for (route, _status), n in seen.items():
        by_route[route] = by_route.get(route, 0) + n
    # The tester's scrapes of the target's /metrics (run.target_metrics) are not load rows.
    by_route["GET /metrics"] -= run.meta["target_metrics"]["scrapes"]
    rows = (
        ev.with_columns(
            pl.concat_str(
                [
                    pl.col("method").cast(pl.String),
                    pl.lit(" "),
                    pl.col("endpoint").cast(pl.String).str.split(" ").list.get(1),
                ]
            ).alias("route")
        )
        .group_by("route")
        .len()
    )
    for route, n in rows.iter_rows():
        assert by_route.get(route) == n, (route, n, by_route)
    # Schema, phases and task ids.
    assert dict(ev.schema) == dict(tfp.Run(ev, None, {}).events.schema)
    assert set(ev["phase"].cast(pl.String).unique()) == {"setup", "load", "teardown"}
    tasks = ev.filter(pl.col("endpoint").cast(pl.String).str.starts_with("POST /tasks"))
    assert tasks["status"].unique().to_list() == [202]
    assert tasks["task_id"].null_count() == 0 and tasks["task_id"].n_unique() == tasks.height
    assert (ev["t_end"] >= ev["t_start"]).all() and (ev["t_start"] >= ev["t_intended"]).all()


async def test_existing_users_get_409_then_log_in() -> None:
    async with tfp.ReferenceTarget(seed=2, **FAST) as target:
        pool = tfp.UserPool(count=3, email_prefix="again")
        tester = tfp.LoadTester(target, pool, seed=2)
        await tester.run(duration=0.5, concurrency=2)
        run = await tester.run(duration=0.5, concurrency=2)
    setup = run.events.filter(pl.col("phase") == "setup")
    signups = setup.filter(pl.col("endpoint") == "POST /auth/signup")
    logins = setup.filter(pl.col("endpoint") == "POST /auth/login")
    assert signups["status"].to_list() == [409, 409, 409]
    assert logins["status"].to_list() == [200, 200, 200]
    assert run.meta["auth"]["signup_existing"] == 3
    assert load_rows(run).filter(pl.col("status") == 401).height == 0


async def test_short_token_ttl_refreshes_single_flight_without_auth_failures() -> None:
    async with tfp.ReferenceTarget(seed=3, access_ttl=1.5, **FAST) as target:
        tester = tfp.LoadTester(target, tfp.UserPool(count=20, email_prefix="ttl"), seed=3)
        run = await tester.run(duration=10, concurrency=50)
    c = run.meta["counters"]
    ev = run.events
    assert c["auth_failures"] == 0
    assert ev.filter(pl.col("status") == 403).height == 0
    assert ev.filter(pl.col("status") == 401, pl.col("phase") == "load").height == 0
    # About one refresh per user per ~1.1 s of a 10 s run; none presented twice (no 403 above).
    refreshes = ev.filter(pl.col("endpoint") == "POST /auth/refresh")
    assert refreshes.height == c["refreshes"] >= 20 * 5
    assert (refreshes["status"] == 200).all()


@pytest.mark.exclusive  # every one of 600 arrivals started (none dropped at the plan's end)
async def test_open_model_starts_every_planned_request() -> None:
    async with tfp.ReferenceTarget(seed=4, **FAST) as target:
        tester = tfp.LoadTester(target, tfp.UserPool(count=5, email_prefix="open"), seed=4)
        run = await tester.run(duration=3, rate=200)
    load = load_rows(run)
    planned = run.meta["phases"]["load"]["planned"]
    assert planned == 600
    assert load.height == 600
    assert run.meta["phases"]["load"]["on_time"] + run.meta["phases"]["load"]["late"] == 600
    # Intended start times follow the schedule: k / rate.
    ti = (load["t_intended"].sort() - load["t_intended"].min()).to_list()
    assert all(abs(t - k * 5_000_000) < 1000 for k, t in enumerate(ti))


@pytest.mark.exclusive  # late/dropped counts of a 1 s schedule
async def test_open_model_in_flight_cap_records_late_starts() -> None:
    async with tfp.ReferenceTarget(seed=5, latency="GET /health=100ms", **FAST) as target:
        mix = tfp.RequestMix([Endpoint("GET /health", "GET", "/health", auth=False)])
        tester = tfp.LoadTester(
            target, tfp.UserPool(count=2, email_prefix="cap"), mix, max_in_flight=5, seed=5
        )
        run = await tester.run(duration=1, rate=200)
    load = load_rows(run)
    stats = run.meta["phases"]["load"]
    assert stats["planned"] == 200 == load.height  # never silently thinned
    # The plan's end is the end: ~50 start (5 at a time, 100 ms each) late behind the cap, the
    # rest never start and are dropped.
    assert stats["cap_hits"] > 100 and stats["late"] > 30 and stats["dropped"] > 100
    assert stats["late"] + stats["on_time"] + stats["dropped"] == 200
    late = load.filter(pl.col("t_start") - pl.col("t_intended") > 50_000_000)
    assert late.height > 50  # response time shows the queueing that latency hides
    dropped = load.filter(pl.col("error") == "dropped")
    assert dropped.height == stats["dropped"]


async def test_server_errors_are_rows_with_kind() -> None:
    async with tfp.ReferenceTarget(seed=6, error_rate="POST /tasks=1.0", **FAST) as target:
        mix = tfp.RequestMix([task_endpoint("generate-pdf")])
        tester = tfp.LoadTester(target, tfp.UserPool(count=2, email_prefix="err"), mix, seed=6)
        run = await tester.run(duration=1, concurrency=4)
    load = load_rows(run)
    assert load.height > 10
    assert load["status"].unique().to_list() == [500]
    assert load["error"].cast(pl.String).unique().to_list() == ["http_5xx"]
    assert run.meta["counters"]["errors"]["http_5xx"] == load.height


async def test_stalled_target_gives_timeouts() -> None:
    # The stall starts 3 s after the target does, once setup is done.
    # stop_timeout: the stalled target never answers the requests it holds, so it is killed after
    # 1 s instead of the default 5 s wait for a graceful exit (its exit is not what is tested).
    async with tfp.ReferenceTarget(seed=7, stalls=[(3.0, 30.0)], stop_timeout=1.0, **FAST) as target:
        mix = tfp.RequestMix([Endpoint("GET /health", "GET", "/health", auth=False)])
        t = tfp.Target(target.base_url, request_timeout=0.5)
        tester = tfp.LoadTester(t, tfp.UserPool(count=1, email_prefix="stall"), mix, seed=7)
        run = await tester.run(duration=4.5, concurrency=3)
    load = load_rows(run)
    kinds = load["error"].cast(pl.String).value_counts()
    timeouts = load.filter(pl.col("error") == "timeout")
    assert timeouts.height >= 3, kinds
    lat = (timeouts["t_end"] - timeouts["t_start"]) / 1e9
    assert lat.min() >= 0.45 and lat.max() < 1.5


async def test_refused_connections_when_target_dies_mid_run() -> None:
    async with tfp.ReferenceTarget(seed=8, **FAST) as target:
        mix = tfp.RequestMix([Endpoint("GET /health", "GET", "/health", auth=False)])
        tester = tfp.LoadTester(target, tfp.UserPool(count=1, email_prefix="dies"), mix, seed=8)
        task = asyncio.ensure_future(tester.run(duration=4, concurrency=2))
        # Synchronise on what the target itself has answered (its /metrics), not on the tester's
        # counter, which also counts set-up rows (GET /health, signup) and raced the assertion.
        answered = 0.0
        deadline = asyncio.get_running_loop().time() + 30  # bounded, generous on a loaded machine
        while asyncio.get_running_loop().time() < deadline and not task.done():
            served = await target.ametrics()
            routes = served.get("taskforge_http_requests_total", {})  # absent before the first answer
            answered = routes.get(("GET /health", "200"), 0.0)
            if answered > 60:
                break
            await asyncio.sleep(0.01)
        assert answered > 60, answered
        os.kill(target.pid, signal.SIGKILL)
        run = await task
    load = load_rows(run)
    kinds = set(load["error"].cast(pl.String).drop_nulls().unique())
    assert "refused" in kinds, kinds
    # > 60 answers seen by the target: one was set-up's GET /health and at most 2 (the virtual
    # users' requests in flight at the kill) may be lost with the process, so > 57 load rows.
    assert load.filter(pl.col("error").is_null()).height > 57
    assert run.meta["stopped"] == "completed"


async def test_cancelled_run_keeps_rows_and_logs_out() -> None:
    async with tfp.ReferenceTarget(seed=9, **FAST) as target:
        tester = tfp.LoadTester(target, tfp.UserPool(count=3, email_prefix="cancel"), seed=9)
        task = asyncio.ensure_future(tester.run(duration=30, concurrency=5))
        for _ in range(500):
            if tester.counters.requests > 200:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        served = await target.ametrics()
    run = tester.last_run
    assert run is not None and run.meta["stopped"] == "cancelled"
    assert run.events.height >= 200
    logouts = run.events.filter(pl.col("endpoint") == "POST /auth/logout")
    assert logouts.height == 3 and (logouts["status"] == 200).all()
    assert served["taskforge_http_requests_total"][("POST /auth/logout", "200")] == 3
    assert run.duration_s < 10


async def test_saved_run_has_no_secrets_and_round_trips(tmp_path: Path) -> None:
    seen_tokens: set[str] = set()

    def build(user: str, token: str | None, rng: object) -> dict[str, object]:
        assert token is not None
        seen_tokens.add(token)
        return {"type": "generate-pdf", "payload": {"url": "https://example.com/x"}}

    ep = Endpoint(
        "POST /tasks spy",
        "POST",
        "/tasks",
        build=build,
        creates_task=True,
        task_type="generate-pdf",
        headers={"Content-Type": "application/json"},
    )
    password = "pw-very-secret-123"
    async with tfp.ReferenceTarget(seed=10, access_ttl=1.0, **FAST) as target:
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=2, email_prefix="sec", password=password),
            tfp.RequestMix([ep]),
            seed=10,
        )
        run = await tester.run(duration=2.5, concurrency=2)
    folder = run.save(tmp_path / "run")
    assert len(seen_tokens) >= 2
    blob = b"".join(p.read_bytes() for p in folder.iterdir())
    for secret in [password, *seen_tokens]:
        assert secret.encode() not in blob
        assert secret not in repr(run) and secret not in json.dumps(run.meta, default=str)
    loaded = tfp.load_run(folder)
    assert loaded.events.equals(run.events)
    assert loaded.meta == json.loads(json.dumps(run.meta, default=str))
    listed = tfp.runs(tmp_path)
    assert listed["run_id"].to_list() == [run.run_id]


async def test_run_sync_inside_a_running_loop() -> None:
    # As in Jupyter: a loop is running in this thread, so the load runs on its own loop.
    asyncio.get_running_loop()
    with tfp.ReferenceTarget(seed=11, **FAST) as target:
        tester = tfp.LoadTester(target, tfp.UserPool(count=2, email_prefix="sync"), seed=11)
        run = tester.run_sync(duration=1, concurrency=2)
    assert run.meta["stopped"] == "completed" and load_rows(run).height > 20


async def test_unreachable_target_is_a_clear_error() -> None:
    tester = tfp.LoadTester("http://127.0.0.1:9", tfp.UserPool(count=1))
    with pytest.raises(tfp.TargetError, match="cannot reach the target at http://127.0.0.1:9"):
        await tester.run(duration=1, concurrency=1)
