"""Open-model requests on the fast client by callback (engine.http_open).

The callback path replaces the open model's task, coroutines and future per request; these tests
pin what it must keep: every arrival is one row and one request the server saw, queued arrivals
(the in-flight cap) start as slots free and the rest are dropped at the plan's end, a drain whose
time is up turns the requests in flight into "cancelled" rows, an answer that needs a coroutine
afterwards (a redirect, a 401) is finished as ``send`` would, and an error while recording is
reported and frees the request's slot. Each test also checks that the callback path carried the
traffic: ``FastClient.request`` (the coroutine path) sends only a few requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.engine.fastclient import FastClient
from tests.engine.fault_server import FaultServer
from tests.engine.test_chain import FailingRecorder, driver  # raises from its 21st row on


@pytest.fixture
def coroutine_sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the requests sent through ``FastClient.request`` (the driver's coroutine path)."""
    calls = [0]
    request = FastClient.request

    async def counted(self: FastClient, data: bytes) -> tuple[int, bytes, str | None]:
        calls[0] += 1
        return await request(self, data)

    monkeypatch.setattr(FastClient, "request", counted)
    yield calls


def get(path: str, auth: bool = False) -> tfp.RequestMix:
    return tfp.RequestMix([tfp.Endpoint(f"GET {path}", "GET", path, auth=auth)])


def counts(load: pl.DataFrame, column: str) -> dict[Any, int]:
    return dict(load.group_by(column).len().iter_rows())


async def test_every_arrival_is_one_row_and_one_request_the_server_saw(coroutine_sends: list[int]) -> None:
    async with FaultServer() as server:
        tester = tfp.LoadTester(server.url, tfp.UserPool(count=2), get("/ok"), seed=3)
        run = await tester.run(duration=1.0, rate=400)
    load = run.load_events()
    assert load.height == run.meta["phases"]["load"]["planned"] == 400
    assert load.height == server.hits["/ok"]
    assert load["error"].null_count() == load.height and (load["bytes_in"] == 2).all()
    assert coroutine_sends[0] < load.height / 4  # the first arrivals build the template
    assert run.meta["counters"]["in_flight"] == 0


async def test_queued_arrivals_start_as_slots_free_and_the_rest_are_dropped(
    coroutine_sends: list[int],
) -> None:
    # Two slots of 20 ms each hold ~100 req/s of the 400 asked: the rest queue behind the cap.
    async with FaultServer(slow_s=0.02) as server:
        tester = tfp.LoadTester(server.url, tfp.UserPool(count=1), get("/slow"), seed=3, max_in_flight=2)
        run = await tester.run(duration=0.5, rate=400)
    load = run.load_events()
    ph = run.meta["phases"]["load"]
    kinds = counts(load, "error")
    assert load.height == ph["planned"] == 200
    assert ph["cap_hits"] > 0 and kinds.get("dropped", 0) > 0
    sent = load.filter(pl.col("error").is_null())
    assert sent.height + kinds["dropped"] == 200 and set(kinds) == {None, "dropped"}
    assert sent.height == server.hits["/slow"]
    # Queued arrivals start late (their wait for a slot is in t_start - t_intended).
    assert ph["late"] > 0
    assert coroutine_sends[0] < sent.height / 2
    assert run.meta["counters"]["in_flight"] == 0


async def test_requests_in_flight_when_the_drain_ends_are_cancelled_rows(coroutine_sends: list[int]) -> None:
    async with FaultServer() as server:
        tester = tfp.LoadTester(server.url, tfp.UserPool(count=1), get("/stall"), seed=3, drain_grace=0.2)
        run = await tester.run(duration=0.5, rate=100)
        hits = server.hits["/stall"]
    load = run.load_events()
    assert load.height == run.meta["phases"]["load"]["planned"] == 50 == hits
    assert counts(load, "error") == {"cancelled": 50}
    # The pre-opened connections carried the first requests by callback; once all were held,
    # the rest had to connect (the coroutine path): both kinds ended as "cancelled" rows.
    assert 0 < coroutine_sends[0] < 50
    assert run.meta["counters"]["in_flight"] == 0


async def test_a_redirect_met_on_the_callback_path_is_followed(coroutine_sends: list[int]) -> None:
    async with FaultServer(turn_after=50) as server:
        tester = tfp.LoadTester(server.url, tfp.UserPool(count=1), get("/turns"), seed=3)
        run = await tester.run(duration=0.5, rate=400)
    load = run.load_events()
    assert load.height == server.hits["/turns"] == 200
    assert (load["status"] == 200).all() and (load["bytes_in"] == 2).all()
    assert server.hits["/ok"] == 150  # every answer after the 50th was followed
    assert coroutine_sends[0] < 25  # before the turn; after it, the endpoint is aiohttp's


async def test_a_401_met_on_the_callback_path_reauthenticates_and_retries_once(
    coroutine_sends: list[int],
) -> None:
    async with FaultServer(revoke_at=100) as server:
        tester = tfp.LoadTester(server.url, tfp.UserPool(count=1), get("/revoked", auth=True), seed=3)
        run = await tester.run(duration=0.5, rate=400)
    load = run.load_events().filter(pl.col("endpoint") == "GET /revoked")  # not the refresh
    refused = load.filter(pl.col("status") == 401)
    assert refused.height >= 1 and (refused["error"] == "http_4xx").all()
    assert run.meta["counters"]["reauths"] == refused.height
    # Each 401 is retried once with the new token: one row more per refusal, all answered.
    assert load.height == server.hits["/revoked"] == 200 + refused.height
    assert load.filter(pl.col("status") != 401)["status"].unique().to_list() == [200]
    assert coroutine_sends[0] < 100


async def test_an_error_while_recording_is_reported_and_frees_its_slot() -> None:
    seen: list[BaseException] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx.get("exception")))
    async with FaultServer() as server:
        drv, fast = driver(server.url, FailingRecorder())  # GET /ok, one user, the fast client
        start = drv.clock.seconds() + 0.005
        end = start + 60 / 600
        drv.end_ns = int((end + 30) * 1e9)  # no arrival is dropped however late the loop is
        await drv.open_schedule(iter([start + i / 600 for i in range(60)]), end, [(end, "load")])
        await drv.drain(10.0)
        fast.close()
        loop.set_exception_handler(None)
    assert drv.recorder.rows == 20 and server.hits["/ok"] == 60
    broke = [e for e in seen if isinstance(e, RuntimeError) and str(e) == "recorder broke"]
    assert broke  # reported by the loop, as a failed task's exception would be
    assert drv._open_active == 0 and drv.counters.in_flight == 0
