"""Sessions: arrivals at the planned rate, journeys whose every step is a row (issue 18 item 2)."""

from __future__ import annotations

import polars as pl
import pytest

import taskforge_perf as tfp

FAST = {"hash_iterations": 1000, "task_durations": {"generate-pdf": "150ms"}}


async def journey(s: tfp.Session) -> None:
    await s.signup()
    task = await s.create_task("generate-pdf", {"url": "https://example.com/x"})
    await s.think(0.05)
    status = await s.watch(task, timeout=5)
    assert status == "completed", status
    await s.request("GET /health")
    await s.logout()


@pytest.mark.timeout(60)
async def test_sessions_arrive_at_the_planned_rate_and_every_step_is_a_row() -> None:
    async with tfp.ReferenceTarget(seed=1, **FAST) as target:
        tester = tfp.LoadTester(target, tfp.UserPool(count=1), seed=1, live=False)
        sessions = tfp.Sessions(journey, rate=10, poisson=False)
        run = await tester.run(duration=3, rate=0, sessions=sessions)
    meta = run.meta["sessions"]
    # evenly spaced: one every 0.1 s from t = 0.1 to 2.9 s
    assert meta["planned"] == meta["started"] == 29
    assert meta["failed"] == 0, meta["first_error"]
    rows = run.events.filter(pl.col("session").is_not_null())
    assert rows["group"].cast(pl.String).unique().to_list() == ["sessions"]
    firsts = rows.group_by("session").agg(pl.col("t_start").min()).sort("session")
    starts_s = ((firsts["t_start"] - run.meta["load_start_ns"]) / 1e9).to_list()
    assert len(starts_s) == 29
    for k, t in enumerate(starts_s, start=1):
        assert abs(t - 0.1 * k) < 0.25, (k, t)  # each session started on its schedule ...
    mean_gap = (starts_s[-1] - starts_s[0]) / 28
    assert abs(mean_gap - 0.1) < 0.005, mean_gap  # ... at the planned rate (10/s)
    finished = meta["completed"]
    assert finished >= 20  # the last ones may be cut by the end of the plan
    per = rows.group_by("session").agg(pl.col("endpoint").cast(pl.String)).sort("session")
    steps = ["POST /auth/signup", "POST /tasks generate-pdf", "GET /health", "POST /auth/logout"]
    complete = [e for e in per["endpoint"].to_list() if e == steps]
    assert len(complete) == finished  # every journey step of every finished session is a row
    assert rows.filter(pl.col("endpoint") == "POST /tasks generate-pdf")["status"].unique().to_list() == [202]
    ws = run.ws_events.filter(pl.col("session").is_not_null())
    done = ws.filter(pl.col("kind") == "message", pl.col("status") == "completed")
    assert done["session"].n_unique() >= finished  # a watch may end just before the plan does
    assert set(ws["kind"].cast(pl.String).unique()) >= {"connect", "subscribe", "message", "close"}
    # concurrent sessions over time: a series of the run
    tl = run.sessions_timeline(window_s=0.5)
    assert tl["started"].sum() == 29 and tl["active"].max() >= 2
    assert run.charts.sessions() is not None


@pytest.mark.timeout(60)
async def test_poisson_sessions_and_broken_journeys_are_counted() -> None:
    async def broken(s: tfp.Session) -> None:
        await s.login()
        raise RuntimeError("journey bug")

    async with tfp.ReferenceTarget(seed=1, **FAST) as target:
        tester = tfp.LoadTester(target, tfp.UserPool(count=1), seed=1, live=False)
        run = await tester.run(duration=3, rate=0, sessions=tfp.Sessions(broken, rate=20, seed=5))
    meta = run.meta["sessions"]
    # Poisson(60): within 4 standard deviations (seeded: the draw is the same every run)
    assert abs(meta["planned"] - 60) < 4 * 60**0.5, meta
    assert meta["failed"] == meta["started"] == meta["planned"]
    assert meta["first_error"] == "RuntimeError: journey bug"
    # login of a user that does not exist yet: 404 then a signup, both rows of the session
    first = run.events.filter(pl.col("session") == 1)["endpoint"].cast(pl.String).to_list()
    assert first == ["POST /auth/login", "POST /auth/signup"]


def test_sessions_config_errors() -> None:
    with pytest.raises(tfp.ConfigError, match="rate"):
        tfp.Sessions(journey, rate=-1)
    with pytest.raises(tfp.ConfigError, match="journey"):
        tfp.Sessions("nope")  # type: ignore[arg-type]
    assert tfp.Sessions(journey, rate={"peak": 3}).rate_for("warmup") == 0.0
