"""WebSocket truth (issue 11 item 5) and WebSocket edges (issue 12 item 7), against real servers on
127.0.0.1: the reference target, and for the edges small servers started by the tests."""

from __future__ import annotations

import asyncio
import math

import polars as pl
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

import taskforge_perf as tfp
from taskforge_perf.mix import task_endpoint
from taskforge_perf.plan import Phase, StressPlan

FAST = {"hash_iterations": 1000}
PDF_IMG = tfp.RequestMix([task_endpoint("generate-pdf"), task_endpoint("resize-image")])
IMG = tfp.RequestMix([task_endpoint("resize-image")])
#: Load of the false-positive check: two to three outbox batches of the real-quirks target (5 s
#: apart) at 100 req/s; benchmarks/bench_ws_truth.py runs the 30 s version.
LOST_RUN_S = 11.0


def kind(ws: pl.DataFrame, k: str) -> pl.DataFrame:
    return ws.filter(pl.col("kind").cast(pl.String) == k)


def errors(ws: pl.DataFrame, e: str) -> pl.DataFrame:
    return ws.filter(pl.col("error").cast(pl.String) == e)


def owners(run: tfp.Run) -> dict[str, str]:
    ev = run.load_events().filter(pl.col("task_id").is_not_null())
    return dict(ev.select("task_id", pl.col("user").cast(pl.String)).iter_rows())


def finished(ws: pl.DataFrame) -> set[str]:
    msgs = kind(ws, "message").filter(pl.col("status").cast(pl.String).is_in(["completed", "failed"]))
    return set(msgs["task_id"])


# --- lost subscriptions --------------------------------------------------------------------------


@pytest.mark.exclusive  # updates within 250 ms of resubscribes, the gateway's 2 ms race
async def test_no_false_lost_subscriptions_on_real_quirks_at_100_rps() -> None:
    """50 sockets, 20 users, 100 req/s of the default mix; the outbox dispatches everything every
    5 s, so a batch lands right after many resubscribes: a live update, not a loss. Every lost row
    must match a frame the target really lost (its own count), and most runs have none."""
    async with tfp.ReferenceTarget(
        real_quirks=True, outbox_batch=2000, worker_concurrency=64, outbox_first_delay=5, seed=21, **FAST
    ) as target:
        tester = tfp.LoadTester(
            target, tfp.UserPool(count=20, email_prefix="lostfp"), seed=21, websockets=50, live=False
        )
        run = await tester.run(duration=LOST_RUN_S, rate=100)
        frames_lost = (await target.ametrics())["taskforge_ws_frames_lost_total"][()]
    ws = run.ws_events
    resub = kind(ws, "resubscribe")
    lost = errors(ws, "lost_subscription")
    # The batch window was exercised: many resubscribes, and updates arriving right after them.
    assert resub.height > 200
    first_after = (
        kind(ws, "message")
        .join(resub.select("task_id", "conn", t_resub="t"), on=["task_id", "conn"])
        .filter(pl.col("t") > pl.col("t_resub"), pl.col("t") - pl.col("t_resub") < 250_000_000)
    )
    assert first_after.height > 20, "no update landed within 250 ms of a resubscribe"
    assert lost.height <= frames_lost, (lost.height, frames_lost)
    assert (
        run.ws_summary()["lost_subscriptions"].item() == lost.height == run.meta["ws"]["lost_subscriptions"]
    )


@pytest.mark.exclusive  # subscribes within the gateway's 2 ms window
@pytest.mark.parametrize("delay", [0.05, None])
async def test_subscribe_sent_at_once_on_a_fresh_socket_is_caught(delay: float | None) -> None:
    """Tasks created before any socket exists are subscribed the instant their user's socket opens;
    with the race the gateway drops those subscribes, and each is caught as lost: the resubscribe
    is answered with the cached status on that socket only. ``None``: the default 2 ms window."""
    plan = StressPlan(
        [
            Phase("create", 1.0, concurrency=1, think_time=0.1, websockets=0),
            Phase("gap", 0.8, concurrency=0, websockets=0),
            Phase("watch", 4.0, concurrency=0, websockets=4),
        ]
    )
    knobs = {} if delay is None else {"token_check_delay": delay}
    # The real gateway forgets a pdf task's status once it completed (a lost subscribe to it cannot
    # be detected by any client); image results stay cached: those tasks prove the detection.
    knobs["worker_concurrency"] = 8
    async with tfp.ReferenceTarget(real_quirks=True, outbox_interval=0.1, seed=22, **knobs, **FAST) as target:
        opts = tfp.WsOptions(resubscribe_after=0.5, subscribe_sample=0, batch_pause=0.0)
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=2, email_prefix=f"lostonce{delay}"),
            IMG,
            seed=22,
            ws_options=opts,
            live=False,
        )
        run = await tester.run(plan)
        frames_lost = (await target.ametrics())["taskforge_ws_frames_lost_total"][()]
    ws = run.ws_events
    created = owners(run)
    assert len(created) >= 5
    subs = kind(ws, "subscribe").filter(pl.col("status") == "own")
    assert set(subs["task_id"]) == set(created)  # created before any socket, subscribed at open
    lost = errors(ws, "lost_subscription")
    assert lost.height == frames_lost
    if delay is not None:
        assert frames_lost == len(created)
    assert set(lost["task_id"]) <= set(created)
    assert finished(ws) == set(created)  # the resubscribes' answers completed every task
    table = run.task_latency()
    assert table["untracked"].sum() == 0 and table["unfinished_at_end"].sum() == 0


# --- isolation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leak", "sample_from"), [(True, "own"), (False, "own"), (True, "all"), (False, "all")]
)
async def test_isolation_rows_follow_the_sampling(leak: bool, sample_from: str) -> None:
    async with tfp.ReferenceTarget(seed=23, leak=leak, task_durations="*=600ms", **FAST) as target:
        opts = tfp.WsOptions(subscribe_interval=0.25, sample_from=sample_from)
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=3, email_prefix=f"iso{int(leak)}{sample_from}"),
            PDF_IMG,
            seed=23,
            websockets=6,
            ws_options=opts,
            live=False,
        )
        plan = StressPlan(
            [Phase("load", 1.5, concurrency=2, think_time=0.2), Phase("settle", 1.0, concurrency=0)]
        )
        run = await tester.run(plan)
    ws = run.ws_events
    own = owners(run)
    msgs = kind(ws, "message").filter(pl.col("task_id").is_in(list(own)))
    foreign = [
        (t, u) for t, u in msgs.select("task_id", pl.col("user").cast(pl.String)).iter_rows() if own[t] != u
    ]
    iso = kind(ws, "isolation")
    assert iso.height == len(foreign)  # every message about another user's task is a row
    summary = run.ws_summary().row(0, named=True)
    samples = kind(ws, "subscribe").filter(pl.col("status") == "sample")
    assert samples.height > 0
    if sample_from == "own":
        sampled = samples.select("task_id", pl.col("user").cast(pl.String)).iter_rows()
        assert all(own[t] == u for t, u in sampled)
        assert iso.height == 0 and summary["isolation_findings"] == summary["isolation_expected"] == 0
    elif leak:
        assert iso.height > 0 and set(iso["error"].cast(pl.String)) == {"expected"}
        assert summary["isolation_findings"] == 0 and summary["isolation_expected"] == iso.height
    else:
        assert iso.height == 0
        assert errors(ws, "server_error").height > 0  # "Not your task"


# --- the task table ------------------------------------------------------------------------------


@pytest.mark.exclusive  # the run stops waiting as soon as the tasks finish
async def test_wait_for_tasks_and_tasks_created_before_the_sockets() -> None:
    """Tasks of 1.5 s, a 1.2 s load: without waiting most are unfinished at the end; with
    wait_for_tasks all finish and the run stops waiting as soon as they have. Sockets open one
    per 0.4 s, so some users create tasks before their socket exists: tracked all the same."""
    async with tfp.ReferenceTarget(
        seed=24, task_durations="*=1500ms", worker_concurrency=64, **FAST
    ) as target:
        runs = {}
        for wait in (0.0, 20.0):
            tester = tfp.LoadTester(
                target,
                tfp.UserPool(count=3, email_prefix=f"waitfor{int(wait)}"),
                PDF_IMG,
                seed=24,
                websockets=3,
                ws_options=tfp.WsOptions(batch_size=1, batch_pause=0.4, subscribe_sample=0),
                live=False,
            )
            runs[wait] = await tester.run(duration=1.2, concurrency=2, think_time=0.1, wait_for_tasks=wait)
    for wait, run in runs.items():
        ws, own = run.ws_events, owners(run)
        table = run.task_latency()
        per_type = table.unique("task_type")
        assert per_type["tasks"].sum() == len(own) and per_type["untracked"].sum() == 0
        first_connect = kind(ws, "connect").group_by("user").agg(pl.col("t").min())
        early = run.load_events().join(first_connect, on="user").filter(pl.col("t_end") < pl.col("t"))
        assert early.filter(pl.col("task_id").is_not_null()).height > 0  # created before a socket
        unfinished = per_type["unfinished_at_end"].sum()
        assert unfinished == len(set(own) - finished(ws))
        if wait:
            assert unfinished == 0
            info = run.meta["ws"]["wait_for_tasks"]
            assert info["unfinished"] == 0 and 0.2 < info["waited_s"] < 10
            assert run.duration_s < 3  # the wait is not part of the load
        else:
            assert unfinished > len(own) // 2
            assert run.meta["ws"]["wait_for_tasks"] is None


@pytest.mark.parametrize("bad", [-1, math.inf, math.nan, "5", True])
async def test_wait_for_tasks_is_validated(bad: object) -> None:
    tester = tfp.LoadTester(
        tfp.Target("http://127.0.0.1:9", "ws://127.0.0.1:9"), tfp.UserPool(count=1), websockets=1
    )
    with pytest.raises(tfp.ConfigError, match="wait_for_tasks"):
        await tester.run(duration=1, concurrency=1, wait_for_tasks=bad)  # type: ignore[arg-type]


async def test_wait_for_tasks_needs_websockets() -> None:
    tester = tfp.LoadTester(tfp.Target("http://127.0.0.1:9"), tfp.UserPool(count=1))
    with pytest.raises(tfp.ConfigError, match="wait_for_tasks needs WebSocket"):
        await tester.run(duration=1, concurrency=1, wait_for_tasks=5)


# --- edges (issue 12 item 7) ---------------------------------------------------------------------


async def test_handshake_in_flight_at_the_end_is_a_row() -> None:
    """A gateway that accepts TCP and never answers the upgrade: every handshake is still in flight
    when the run ends, and each is a connect_error row (cancelled), never silence."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(1 << 16)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with tfp.ReferenceTarget(seed=25, **FAST) as target:
            t = tfp.Target(target.base_url, f"ws://127.0.0.1:{port}")
            tester = tfp.LoadTester(
                t,
                tfp.UserPool(count=2, email_prefix="wsinflight"),
                PDF_IMG,
                websockets=4,
                ws_options=tfp.WsOptions(batch_pause=0.0),
                live=False,
            )
            task = asyncio.ensure_future(tester.run(duration=30, concurrency=1, think_time=0.1))
            deadline = asyncio.get_running_loop().time() + 15
            while len(held) < 4:  # every upgrade request reached the server and waits
                assert asyncio.get_running_loop().time() < deadline, "the handshakes never started"
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        for w in held:
            w.close()
        server.close()
    run = tester.last_run
    assert run is not None
    ws = run.ws_events
    errs = kind(ws, "connect_error")
    assert errs.height == 4 and set(errs["error"].cast(pl.String)) == {"cancelled"}
    assert kind(ws, "connect").height == 0


async def test_reset_soon_after_the_handshake_is_dropped_not_rejected() -> None:
    """The target aborts every socket every 50 ms: each is reset well inside the 200 ms rejection
    window, with no message. A reset (1006) is a drop: no rejection, no token refresh."""
    async with tfp.ReferenceTarget(seed=26, ws_drop_every=0.05, **FAST) as target:
        opts = tfp.WsOptions(backoff_initial=0.05, backoff_max=0.1)
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=2, email_prefix="wsreset"),
            PDF_IMG,
            websockets=2,
            ws_options=opts,
            live=False,
        )
        run = await tester.run(duration=1.5, concurrency=0)
    ws = run.ws_events
    drops = kind(ws, "close").filter(pl.col("error") == "dropped")
    assert drops.height >= 4 and set(drops["code"]) == {1006}
    assert kind(ws, "connect").height >= drops.height
    assert errors(ws, "rejected").height == 0
    assert run.meta["counters"]["refreshes"] == 0 and run.meta["counters"]["logins"] == 0
    refresh = run.events.filter(pl.col("endpoint").cast(pl.String).str.contains("refresh"))
    assert refresh.height == 0


@pytest.mark.parametrize(("status", "error"), [(403, "rejected"), (401, "rejected"), (500, "other")])
async def test_refused_upgrade(status: int, error: str) -> None:
    """An upgrade answered 401/403 is the gateway refusing the token (rejected, token renewed);
    any other status is not a rejection."""

    def refuse(conn: ServerConnection, request: Request) -> Response:
        return conn.respond(status, "no\n")

    async def handler(conn: ServerConnection) -> None:  # never reached
        await conn.close()

    async with serve(handler, "127.0.0.1", 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1] if server.sockets else 0
        async with tfp.ReferenceTarget(seed=27, **FAST) as target:
            t = tfp.Target(target.base_url, f"ws://127.0.0.1:{port}")
            opts = tfp.WsOptions(backoff_initial=0.1, backoff_max=0.2)
            tester = tfp.LoadTester(
                t,
                tfp.UserPool(count=1, email_prefix=f"wsup{status}"),
                PDF_IMG,
                websockets=1,
                ws_options=opts,
                live=False,
            )
            run = await tester.run(duration=1.0, concurrency=0)
    errs = kind(run.ws_events, "connect_error")
    assert errs.height >= 2
    assert set(errs["error"].cast(pl.String)) == {error} and set(errs["code"]) == {status}
    refreshes = run.meta["counters"]["refreshes"]
    assert refreshes >= 1 if error == "rejected" else refreshes == 0
