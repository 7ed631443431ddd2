"""The WebSocket driver against the real reference target on 127.0.0.1 (issue 5)."""

from __future__ import annotations

import asyncio
import time

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.engine.ws_conn import parse_message
from taskforge_perf.mix import task_endpoint
from taskforge_perf.plan import Phase, StressPlan

FAST = {"hash_iterations": 1000}
PDF_IMG = tfp.RequestMix([task_endpoint("generate-pdf"), task_endpoint("resize-image")])


def kind(ws: pl.DataFrame, k: str) -> pl.DataFrame:
    return ws.filter(pl.col("kind").cast(pl.String) == k)


def settle_plan(load_s: float, settle_s: float, *, think: float = 0.1, vus: int = 2) -> StressPlan:
    """Throttled task creation, then a quiet phase in which the last tasks finish."""
    return StressPlan(
        [
            Phase("load", load_s, concurrency=vus, think_time=think),
            Phase("settle", settle_s, concurrency=0),
        ]
    )


async def wait_for(cond, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def created_tasks(run: tfp.Run) -> pl.DataFrame:
    ev = run.load_events().filter(pl.col("task_id").is_not_null())
    return ev.select("task_id", "t_end", "user", "endpoint")


# --- units -------------------------------------------------------------------------------------


def test_parse_message_shapes() -> None:
    assert parse_message('{"taskId":"a","status":"processing","progress":10}') == (
        "message",
        "a",
        "processing",
        10.0,
        None,
    )
    assert parse_message('{"taskId":"a","success":true,"url":"u"}')[:3] == (
        "message",
        "a",
        "completed",
    )
    assert parse_message('{"taskId":"a","success":false}')[2] == "failed"
    assert parse_message('{"hello":"world"}') == ("message", None, "unknown", None, "unknown_shape")
    assert parse_message("[1,2]")[4] == "unknown_shape"
    assert parse_message("<<garbage") == ("error", None, None, None, "unparsable")
    assert parse_message(b"\xff\xfe") == ("error", None, None, None, "unparsable")
    assert parse_message('{"type":"error","taskId":"a","message":"Not your task"}')[4] == "server_error"


def test_ws_options_validation_names_the_field() -> None:
    with pytest.raises(tfp.ConfigError, match="WsOptions.batch_size"):
        tfp.WsOptions(batch_size=0)
    with pytest.raises(tfp.ConfigError, match="WsOptions.subscribe_sample"):
        tfp.WsOptions(subscribe_sample=1.5)
    with pytest.raises(tfp.ConfigError, match="WsOptions.backoff_max"):
        tfp.WsOptions(backoff_initial=2.0, backoff_max=1.0)
    with pytest.raises(tfp.ConfigError, match="WsOptions.connect_timeout"):
        tfp.WsOptions(connect_timeout=0)
    assert tfp.WsOptions(subscribe_sample=0.5).sample_size(9) == 5
    assert tfp.WsOptions(subscribe_sample=3).sample_size(2) == 2
    assert [tfp.WsOptions().backoff(i) for i in (0, 1, 10)] == [0.1, 0.2, 5.0]


async def test_websockets_without_ws_url_is_a_config_error() -> None:
    tester = tfp.LoadTester(tfp.Target("http://127.0.0.1:9"), tfp.UserPool(count=1), websockets=3)
    with pytest.raises(tfp.ConfigError, match=r"Target\.ws_url"):
        await tester.run(duration=1, concurrency=1)
    plan = StressPlan([Phase("a", 1, concurrency=1, websockets=2)])
    with pytest.raises(tfp.ConfigError, match=r"Target\.ws_url"):
        await tfp.LoadTester(tfp.Target("http://127.0.0.1:9"), tfp.UserPool(count=1)).run(plan)


# --- against the target ------------------------------------------------------------------------


@pytest.mark.exclusive  # every task completes within the settle phase
async def test_round_robin_own_tasks_complete_and_garbage_is_recorded() -> None:
    async with tfp.ReferenceTarget(seed=11, ws_garbage_every=0.5, **FAST) as target:
        tester = tfp.LoadTester(
            target, tfp.UserPool(count=5, email_prefix="wsrr"), PDF_IMG, seed=11, websockets=12
        )
        run = await tester.run(settle_plan(2.0, 1.5), name="ws-own")
    ws = run.ws_events
    # Round robin: 12 connections over 5 users -> 2 or 3 each.
    per_user = kind(ws, "connect").group_by("user").len()["len"]
    assert per_user.sum() == 12 and per_user.min() == 2 and per_user.max() == 3
    assert (kind(ws, "connect")["handshake_ns"] > 0).all()
    # Own-task tracking: every task created over HTTP got its completed message.
    created = created_tasks(run)
    assert created.height > 20
    done = kind(ws, "message").filter(pl.col("status") == "completed")
    missing = set(created["task_id"]) - set(done["task_id"])
    assert not missing, f"{len(missing)} of {created.height} tasks never completed"
    # Latency from creation to completed: >= the configured duration (pdf 300 ms, image 200 ms).
    # ``since_created_ns`` counts from the 202 reaching the tester; the target started the task's
    # clock before sending it, so the lower bound counts from the POST's start (the 202's own
    # latency added back): a loaded machine that delays the 202 cannot make it fail.
    first = done.sort("t").group_by("task_id").agg(pl.col("since_created_ns", "task_type").first())
    post_ns = run.load_events().filter(pl.col("task_id").is_not_null())
    first = first.join(
        post_ns.select("task_id", (pl.col("t_end") - pl.col("t_start")).alias("post_ns")), "task_id"
    )
    for ttype, dur in (("generate-pdf", 0.3), ("resize-image", 0.2)):
        of_type = first.filter(pl.col("task_type") == ttype)
        lat = of_type["since_created_ns"] / 1e9
        since_post = (of_type["since_created_ns"] + of_type["post_ns"]) / 1e9
        assert lat.len() > 5
        assert since_post.min() >= dur * 0.95 and lat.max() < dur + 1.0, (ttype, since_post.min(), lat.max())
    # Every own subscribe row names its task type and the time since creation.
    own = kind(ws, "subscribe").filter(pl.col("status") == "own")
    assert own["task_type"].null_count() == 0 and own.height > 0
    # Garbage from the target: rows with an error kind, never a crash.
    assert kind(ws, "error").filter(pl.col("error") == "unparsable").height >= 12
    unknown = kind(ws, "message").filter(pl.col("error") == "unknown_shape")
    assert unknown.height >= 12 and set(unknown["status"].cast(pl.String)) == {"unknown"}
    # Clean end: a close row (1000, closed by us) per connection, counters back to 0.
    closes = kind(ws, "close")
    assert closes.height == 12 and set(closes["code"]) == {1000} and closes["error"].null_count() == 12
    assert run.meta["counters"]["ws_open"] == 0
    assert run.meta["counters"]["ws_completed"] == created.height
    assert run.meta["ws"]["opened"] == 12
    summary = run.ws_summary()
    assert summary["opened"].item() == 12 and summary["messages"].item() > 0
    lat = run.task_latency()
    assert lat.filter(pl.col("status") == "completed")["unfinished_at_end"].sum() == 0
    assert "tok" not in " ".join(str(v) for v in ws.row(0))


async def test_bad_token_is_a_connect_error_and_the_run_goes_on() -> None:
    pool = tfp.UserPool(count=3, email_prefix="wsbad")

    def corrupt(done: int, total: int) -> None:
        if done == total:  # after setup: forge user 0's access token
            pool[0].access = "forged.token.value"

    async with tfp.ReferenceTarget(seed=12, **FAST) as target:
        tester = tfp.LoadTester(target, pool, PDF_IMG, seed=12, websockets=6, setup_progress=corrupt)
        run = await tester.run(settle_plan(1.5, 1.0))
    ws = run.ws_events
    errs = kind(ws, "connect_error")
    assert errs.height >= 1
    assert set(errs["user"].cast(pl.String)) == {pool[0].email}
    assert set(errs["error"].cast(pl.String)) == {"rejected"} and set(errs["code"]) == {1008}
    # It reconnected with a renewed token; everyone got messages.
    connects = kind(ws, "connect").group_by("user").len()
    assert connects.height == 3 and connects["len"].min() == 2
    assert kind(ws, "message").filter(pl.col("user") == pool[0].email).height > 0
    assert "forged" not in str(ws.to_dicts())


@pytest.mark.exclusive  # drop/reconnect timeline within the run
async def test_server_drops_reconnect_and_restore_subscriptions() -> None:
    async with tfp.ReferenceTarget(
        seed=13, ws_drop_every=1.0, task_durations="*=uniform:600ms:900ms", **FAST
    ) as target:
        opts = tfp.WsOptions(backoff_initial=0.05)
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=3, email_prefix="wsdrop"),
            PDF_IMG,
            seed=13,
            websockets=6,
            ws_options=opts,
        )
        run = await tester.run(settle_plan(2.6, 1.6, think=0.3))
    ws = run.ws_events
    drops = kind(ws, "close").filter(pl.col("error") == "dropped")
    reconnects = kind(ws, "reconnect")
    assert drops.height >= 12 and reconnects.height >= 12
    assert kind(ws, "subscribe").filter(pl.col("status") == "restore").height > 0
    first_reconnect = reconnects["t"].min()
    assert kind(ws, "message").filter(pl.col("t") > first_reconnect).height > 0
    # Tasks created before the last drop still complete (subscriptions restored).
    last_drop = drops["t"].max()
    created = created_tasks(run).filter(pl.col("t_end") < last_drop - 200_000_000)
    done = set(kind(ws, "message").filter(pl.col("status") == "completed")["task_id"])
    assert created.height > 5
    missing = set(created["task_id"]) - done
    assert len(missing) <= created.height // 20, f"{len(missing)} of {created.height} never completed"
    assert run.ws_summary()["reconnected"].item() == reconnects.height


async def test_cancellation_closes_every_socket() -> None:
    async with tfp.ReferenceTarget(seed=14, **FAST) as target:
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=4, email_prefix="wscancel"),
            PDF_IMG,
            seed=14,
            websockets=20,
            ws_options=tfp.WsOptions(batch_size=20),
        )
        task = asyncio.ensure_future(tester.run(duration=30, concurrency=2, think_time=0.1))
        await wait_for(lambda: tester.counters.ws_open == 20, 15, "20 open sockets")
        seen = await target.ametrics()
        assert seen["taskforge_ws_connections"][()] == 20
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async def open_on_target() -> float:
            return (await target.ametrics())["taskforge_ws_connections"][()]

        deadline = time.monotonic() + 5
        while await open_on_target() != 0:
            assert time.monotonic() < deadline, "the target still sees open sockets"
            await asyncio.sleep(0.05)
    run = tester.last_run
    assert run is not None and run.meta["stopped"] == "cancelled"
    closes = kind(run.ws_events, "close")
    assert closes.height == 20 and set(closes["code"]) == {1000}
    assert tester.counters.ws_open == 0


@pytest.mark.parametrize("leak", [True, False])
async def test_isolation_probe(leak: bool) -> None:
    async with tfp.ReferenceTarget(seed=15, leak=leak, task_durations="*=800ms", **FAST) as target:
        opts = tfp.WsOptions(isolation_probe=True, subscribe_interval=0.25, subscribe_sample=0)
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=3, email_prefix=f"wsiso{int(leak)}"),
            PDF_IMG,
            seed=15,
            websockets=6,
            ws_options=opts,
        )
        run = await tester.run(settle_plan(1.5, 1.0, think=0.2))
    ws = run.ws_events
    probes = kind(ws, "subscribe").filter(pl.col("status") == "probe")
    assert probes.height >= 3
    iso = kind(ws, "isolation")
    if leak:
        assert iso.height > 0
        owners = dict(created_tasks(run).select("task_id", "user").iter_rows())
        assert all(owners[t] != u for t, u in iso.select("task_id", "user").iter_rows())
    else:
        assert iso.height == 0
        assert kind(ws, "error").filter(pl.col("error") == "server_error").height > 0
    assert run.ws_summary()["isolation_findings"].item() == iso.height


@pytest.mark.exclusive  # real-quirks timeline (2 ms subscribe race)
async def test_real_quirks_rejection_lost_subscriptions_and_both_shapes() -> None:
    pool = tfp.UserPool(count=3, email_prefix="wsquirk")

    def corrupt(done: int, total: int) -> None:
        if done == total:
            pool[0].access = "forged.token.value"

    async with tfp.ReferenceTarget(
        seed=16,
        real_quirks=True,
        outbox_interval=0.5,
        worker_concurrency=16,  # a batch runs at once (the real default is one consumer per queue)
        # pdf still processing when resubscribed: the real gateway forgets a finished pdf's status
        task_durations="generate-pdf=1500ms",
        token_check_delay=0.05,
        ws_drop_every=2.2,  # after the first resubscribes' 1 s confirmation window
        **FAST,
    ) as target:
        opts = tfp.WsOptions(resubscribe_after=0.8, backoff_initial=0.05, subscribe_sample=0)
        tester = tfp.LoadTester(
            target, pool, PDF_IMG, seed=16, websockets=6, ws_options=opts, setup_progress=corrupt
        )
        run = await tester.run(settle_plan(2.5, 2.5, think=0.15))
    ws = run.ws_events
    # Bad token: accepted, then closed with no code -> a rejection with 1005.
    rejected = kind(ws, "connect_error").filter(pl.col("error") == "rejected")
    assert rejected.height >= 1 and set(rejected["code"]) == {1005}
    # Subscribes sent as a socket opens are lost; they are detected and resent.
    resub = kind(ws, "resubscribe")
    lost = ws.filter(pl.col("error") == "lost_subscription")
    assert resub.height > 0 and lost.height > 0
    # A loss is confirmed by the gateway's at-once answer (its cached status) to the resubscribe.
    assert lost.height <= resub.height and (lost["since_subscribe_ns"] <= 250_000_000).all()
    assert set(lost["task_id"]) <= set(resub["task_id"])
    # Both message shapes complete a timeline: pdf by status, image by {success: true}.
    done = kind(ws, "message").filter(pl.col("status") == "completed")
    assert set(done["task_type"].cast(pl.String)) == {"generate-pdf", "resize-image"}
    # Tasks created before the last drop all complete despite lost subscriptions.
    last_drop = kind(ws, "close").filter(pl.col("error") == "dropped")["t"].max()
    created = created_tasks(run).filter(pl.col("t_end") < last_drop)
    missing = set(created["task_id"]) - set(done["task_id"])
    assert created.height > 5 and len(missing) <= created.height // 20, (
        len(missing),
        created.height,
    )
    assert run.ws_summary()["lost_subscriptions"].item() == lost.height


@pytest.mark.exclusive  # real-quirks timeline
async def test_quirky_gateway_closing_one_socket_does_not_silence_the_user() -> None:
    """The real gateway unsubscribes a user from every task when any one of its sockets closes;
    the tester resends that user's subscriptions on its other sockets, so its tasks still complete."""
    plan = StressPlan(
        [
            Phase("four", 1.5, concurrency=1, think_time=0.15, websockets=4),
            Phase("three", 1.0, concurrency=0, websockets=3),  # retires one socket of one user
            Phase("settle", 2.5, concurrency=0),
        ]
    )
    # Video and image results stay in the real gateway's cache; a pdf completing in the 250 ms
    # before the restore is forgotten by the real gateway, and no client can recover it.
    durations = "compress-video=1500ms,resize-image=1500ms"
    async with tfp.ReferenceTarget(
        real_quirks=True,
        outbox_interval=0.2,
        token_check_delay=0.02,
        task_durations=durations,
        worker_concurrency=32,
        seed=31,
        **FAST,
    ) as target:
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=2, email_prefix="quirkclose"),
            tfp.RequestMix([task_endpoint("compress-video"), task_endpoint("resize-image")]),
            websockets=4,
            seed=31,
            ws_options=tfp.WsOptions(subscribe_interval=60, batch_pause=0.0),
        )
        run = await tester.run(plan)
    ws = run.ws_events
    retired = kind(ws, "close").filter(pl.col("error").is_null(), pl.col("phase") == "three")
    assert retired.height == 1
    user = retired["user"][0]
    restores = kind(ws, "subscribe").filter(
        pl.col("status") == "restore", pl.col("user") == user, pl.col("t") >= retired["t"][0]
    )
    assert restores.height > 0
    # That user's tasks created before the close still reach completed.
    theirs = created_tasks(run).filter(pl.col("user") == user, pl.col("t_end") < retired["t"][0])
    done = kind(ws, "message").filter(pl.col("status") == "completed")["task_id"]
    missing = set(theirs["task_id"]) - set(done)
    assert theirs.height > 3 and not missing, (len(missing), theirs.height)
