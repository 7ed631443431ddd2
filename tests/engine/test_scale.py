"""Sharded runs: processes=2 and a Dask LocalCluster against the reference target on 127.0.0.1.

Each shard takes every 2nd arrival of the exact open-model schedule and a partition of the users;
the merged Run must carry the planned schedule, both worker ids and every user under one worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from itertools import islice

import aiohttp
import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.engine.shard import Shard

FAST = {"hash_iterations": 1000}
RATE, SECONDS, USERS = 100, 2, 6


@pytest.fixture(scope="module")
def target() -> Iterator[tfp.ReferenceTarget]:
    with tfp.ReferenceTarget(seed=3, **FAST) as t:
        yield t


def check_sharded(run: tfp.Run, plan: tfp.StressPlan, pool: tfp.UserPool) -> None:
    """The merged Run of a 2-shard open-model run: the exact schedule, users partitioned."""
    ev = run.events
    assert run.meta["workers"] == 2
    assert [s["status"] for s in run.meta["shards"]] == ["ok", "ok"]
    assert sorted(ev["worker"].unique().to_list()) == [0, 1]
    load = ev.filter(pl.col("phase") == plan.phases[0].name)
    planned = list(plan.arrival_times())
    # Every planned arrival is a row (sent, late or dropped): the total rate is the planned one.
    assert load.height == len(planned)
    got = ((load["t_intended"].sort() - run.meta["load_start_ns"]) / 1e9).to_list()
    assert max(abs(a - b) for a, b in zip(got, planned, strict=True)) < 1e-6  # no burst, no gap
    # Each shard took every 2nd arrival: half the rows each (the merged schedule is the plan).
    per_worker = load.group_by("worker").len().sort("worker")["len"].to_list()
    assert per_worker == [len(planned[0::2]), len(planned[1::2])]
    # Users partitioned: every user of the pool under exactly one worker.
    users = ev.filter(pl.col("user").cast(pl.String) != "-")
    owners = users.group_by("user").agg(pl.col("worker").n_unique().alias("n"))
    assert owners["n"].to_list() == [1] * owners.height
    assert set(owners["user"].cast(pl.String)) == {u.email for u in pool}
    assert run.meta["users"]["ready"] == USERS
    gen = run.meta["generator"]
    assert set(gen["workers"]) == {"0", "1"} and isinstance(gen["saturated"], bool)


def test_shard_shares_and_arrivals_partition_the_plan() -> None:
    plan = tfp.StressPlan([tfp.Phase("a", 1, rate=37), tfp.Phase("b", 2, rate=11, ramp=True)])
    whole = list(plan.arrival_times())
    parts = [list(Shard(index=k, count=3).arrivals(plan.arrival_times())) for k in range(3)]
    assert sorted(t for p in parts for t in p) == whole
    assert parts[1] == list(islice(whole, 1, None, 3))
    for n in (0, 1, 5, 7, 100):
        shares = [Shard(index=k, count=3).share(n) for k in range(3)]
        assert sum(shares) == n and max(shares) - min(shares) <= 1
    pool = tfp.UserPool(count=7, min_ready=0.5)
    slices = [Shard(index=k, count=3).users(pool) for k in range(3)]
    emails = [u.email for s in slices for u in s]
    assert sorted(emails) == sorted(u.email for u in pool) and len(set(emails)) == 7
    assert [len(s) for s in slices] == [3, 2, 2]
    with pytest.raises(tfp.ConfigError, match="at least 3 users"):
        Shard(index=0, count=3).users(tfp.UserPool(count=2))


def test_two_processes_hold_the_planned_rate_and_partition_users(
    target: tfp.ReferenceTarget, tmp_path: object
) -> None:
    pool = tfp.UserPool(count=USERS, email_prefix="shardp")
    snaps: list[tfp.Snapshot] = []
    # A route the target answers 404: error samples from both shards (issue 16).
    missing = tfp.Endpoint("GET /missing", "GET", "/missing", 10, auth=False)
    mix = tfp.RequestMix([*tfp.RequestMix.taskforge().endpoints, missing])
    tester = tfp.LoadTester(
        target, pool, mix, seed=1, processes=2, listeners=[snaps.append], monitor_interval=0.2
    )
    plan = tfp.StressPlan.constant(SECONDS, rate=RATE)
    run = tester.run_sync(plan, name="sharded")
    check_sharded(run, plan, pool)
    assert run.path is not None and (run.path / "events.parquet").is_file()
    assert tfp.load_run(run.path).events.height == run.events.height
    # The live view got the shards' snapshots aggregated (both workers, counts added up).
    both = [s for s in snaps if s.extra.get("workers") == 2]
    assert both and max(s.requests for s in both) >= run.meta["counters"]["requests"] - USERS * 4
    assert 0 < tester.counters.requests <= run.meta["counters"]["requests"]
    # The merged summary is the summary of the concatenated shard rows.
    ev = run.events
    shards = pl.concat([ev.filter(pl.col("worker") == k) for k in (1, 0)])
    again = tfp.Run(shards, run.ws_events, dict(run.meta)).summary()
    assert run.summary().sort("endpoint").equals(again.sort("endpoint"))
    # The shards' error samples merged: the key's earliest rows over both workers, the target's words.
    miss = run.load_events().filter(pl.col("endpoint") == "GET /missing").sort("t_start")
    assert sorted(miss["worker"].unique().to_list()) == [0, 1]
    samples = [s for s in run.meta["error_samples"] if s["endpoint"] == "GET /missing"]
    assert [(s["t_start"], s["worker"]) for s in samples] == list(
        miss.select("t_start", "worker").head(3).iter_rows()
    )
    assert all(s["status"] == 404 and "Cannot GET /missing" in s["message"] for s in samples)
    assert tfp.load_run(run.path).meta["error_samples"] == run.meta["error_samples"]


def test_dask_local_cluster_runs_one_shard_per_worker(target: tfp.ReferenceTarget) -> None:
    distributed = pytest.importorskip("distributed", reason="needs pip install 'taskforge-perf[distributed]'")
    pool = tfp.UserPool(count=USERS, email_prefix="shardd")
    plan = tfp.StressPlan.constant(SECONDS, rate=RATE)
    with (
        # No dashboard, and the scheduler's HTTP server on a free loopback port: on its default
        # 8787, a cluster of another process (a benchmark) made it warn and move, an error here.
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        tester = tfp.LoadTester(target, pool, seed=1, runner=tfp.DaskRunner(client), save_dir=None)
        run = tester.run_sync(plan, name="dask")
    check_sharded(run, plan, pool)
    assert run.path is None  # save_dir=None: the rows came back as Arrow IPC bytes, into memory


async def _taken(target: tfp.ReferenceTarget, email: str) -> None:
    """Sign ``email`` up with another password, so the run's login for it fails."""
    async with aiohttp.ClientSession() as s:
        body = {"email": email, "password": "not-the-pool-password"}
        async with s.post(target.base_url + "/auth/signup", json=body) as resp:
            assert resp.status in (201, 409)


def test_a_failed_shard_is_reported_and_the_others_kept(target: tfp.ReferenceTarget) -> None:
    # Users 1 and 3 go to shard 1; both exist with another password: shard 1 cannot log anyone in.
    specs = [(f"shardf{i}@example.com", "testpassword123") for i in range(4)]
    for i in (1, 3):
        asyncio.run(_taken(target, specs[i][0]))
    tester = tfp.LoadTester(target, tfp.UserPool(users=specs), seed=1, processes=2, save_dir=None)
    run = tester.run_sync(duration=1, rate=40)
    shards = run.meta["shards"]
    assert shards[0]["status"] == "ok"
    assert shards[1]["status"] == "failed" and "TargetError" in shards[1]["error"]
    assert any("worker 1 failed" in w for w in run.meta["warnings"])
    ev = run.events
    assert ev.filter(pl.col("phase") == "load")["worker"].unique().to_list() == [0]
    # The failed shard's own rows (its reachability check and failed logins) are kept too.
    failed = ev.filter((pl.col("worker") == 1) & (pl.col("phase") == "setup"))
    assert failed.height >= 3 and set(failed["user"].cast(pl.String)) >= {specs[1][0], specs[3][0]}
    assert ev.filter(pl.col("phase") == "load").height == len(
        list(tfp.StressPlan.constant(1, rate=40).arrival_times())[0::2]
    )


def test_abort_on_fail_acts_on_the_whole_run(target: tfp.ReferenceTarget) -> None:
    tester = tfp.LoadTester(target, tfp.UserPool(count=4, email_prefix="sharda"), processes=2, save_dir=None)
    t = tfp.Threshold.parse("p50 < 0.001ms", abort_on_fail=True)
    run = tester.run_sync(duration=30, rate=50, thresholds=[t])
    assert run.meta["stopped"].startswith("aborted: ")
    assert run.meta["duration_s"] < 15
    assert run.meta["passed"] is False
    assert [s["stopped"] for s in run.meta["shards"]] == [run.meta["stopped"]] * 2


def test_websockets_are_split_and_counted_once(target: tfp.ReferenceTarget) -> None:
    tester = tfp.LoadTester(
        target, tfp.UserPool(count=4, email_prefix="shardw"), processes=2, websockets=5, save_dir=None
    )
    run = tester.run_sync(duration=2, concurrency=4)
    ws = run.ws_events
    connects = ws.filter(pl.col("kind") == "connect")
    assert connects.group_by("worker").len().sort("worker")["len"].to_list() == [3, 2]
    assert run.meta["ws"]["opened"] == 5
    # Settings are not summed across shards.
    assert (
        run.meta["ws"]["options"] == tfp.WsOptions(connect_timeout=tester.target.ws_connect_timeout).to_dict()
    )
    assert run.meta["ws"]["opened"] == connects.height
    assert run.meta["ws"]["wanted"] == 5
    # Closed model: 4 virtual users split 2 + 2, every one sending.
    load = run.load_events()
    assert sorted(load["worker"].unique().to_list()) == [0, 1]


def test_merge_of_snapshots_and_generator() -> None:
    from taskforge_perf.engine.merge import aggregate, merge_generator

    def snap(requests: int, p99: float | None, sat: str | None) -> tfp.Snapshot:
        return tfp.Snapshot(
            elapsed_s=1.0,
            planned_s=2.0,
            phase="load",
            phase_remaining_s=1.0,
            rps=100.0,
            requests=requests,
            in_flight=3,
            errors={"http_5xx": 1},
            approx_p50_ms=1.0,
            approx_p95_ms=2.0,
            approx_p99_ms=p99,
            tasks_created=5,
            ws_open=2,
            ws_completed=1,
            late=0,
            cpu=0.5,
            lag_p99_ms=1.0,
            saturated=sat,
        )

    total = aggregate({0: snap(10, 3.0, None), 1: snap(20, None, "CPU 95%")})
    assert (total.requests, total.rps, total.in_flight, total.errors) == (30, 200.0, 6, {"http_5xx": 2})
    assert total.approx_p99_ms == 3.0 and total.cpu == 1.0 and total.saturated == "worker 1: CPU 95%"
    gen = merge_generator(
        {
            0: {"saturated": False, "reasons": [], "causes": [], "cpu_max": 0.4, "starts": 5},
            1: {
                "saturated": True,
                "reasons": ["tester: x"],
                "causes": ["tester"],
                "cpu_max": 0.9,
                "starts": 7,
            },
        }
    )
    assert gen["saturated"] is True and gen["cpu_max"] == 0.9 and gen["starts"] == 12
    assert gen["reasons"] == ["worker 1: tester: x"] and set(gen["workers"]) == {"0", "1"}


def test_bad_sharding_options_are_config_errors(target: tfp.ReferenceTarget) -> None:
    with pytest.raises(tfp.ConfigError, match="processes must be an integer >= 1"):
        tfp.LoadTester(target, processes=0)
    with pytest.raises(tfp.ConfigError, match="processes= or runner=, not both"):
        tfp.LoadTester(target, processes=2, runner=object())  # type: ignore[arg-type]
    with pytest.raises(tfp.ConfigError, match="DaskRunner"):
        tfp.DaskRunner(object())
    tester = tfp.LoadTester(target, tfp.UserPool(count=2), processes=2, metrics_port=0, save_dir=None)
    with pytest.raises(tfp.ConfigError, match="metrics_port"):
        tester.run_sync(duration=1, rate=1)
    with pytest.raises(tfp.ConfigError, match="at least 3 users"):
        tfp.LoadTester(target, tfp.UserPool(count=2), processes=3, save_dir=None).run_sync(duration=1, rate=1)


def test_a_worker_process_that_dies_is_reported_and_the_others_kept(target: tfp.ReferenceTarget) -> None:
    import multiprocessing
    import os

    def build(user: str, token: str | None, rng: object) -> dict[str, object]:
        if multiprocessing.current_process().name == "taskforge-perf-worker-1":
            os._exit(3)  # an injected crash of worker 1's process at its first request
        return {"type": "generate-pdf", "payload": {"url": "https://example.com"}}

    mix = tfp.RequestMix([tfp.Endpoint("POST /tasks pdf", "POST", "/tasks", build=build, creates_task=True)])
    tester = tfp.LoadTester(
        target, tfp.UserPool(count=4, email_prefix="shardk"), mix, processes=2, save_dir=None
    )
    run = tester.run_sync(duration=1, rate=20)
    shards = run.meta["shards"]
    assert shards[0]["status"] == "ok"
    assert shards[1]["status"] == "failed" and "exited with code 3" in shards[1]["error"]
    load = run.load_events()
    assert load["worker"].unique().to_list() == [0] and load.height == 10
