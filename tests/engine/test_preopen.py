"""Open model: connections opened before the schedule's clock starts (issue 19, item 2).

Lateness figures live in benchmarks/bench_preopen.py; here only what is observable: how many
connections were opened before the load, how many requests had to open their own, the meta and
the warning, and that every planned request is still one row.
"""

from __future__ import annotations

import math

import polars as pl
import pytest

import taskforge_perf as tfp
import taskforge_perf.engine.http as engine_http
from taskforge_perf.engine.fastclient import FastClient, RequestTemplate
from tests.engine.test_fastpath import RawServer, ep


async def test_fast_client_preopen_fills_the_idle_pool() -> None:
    async with RawServer() as raw:
        client = FastClient(raw.url, timeout=10.0)
        try:
            assert await client.preopen(5) == 5
            assert client.open_connections == 5 and client.connections_made == 5
            assert await client.preopen(5) == 0  # already there: nothing more
            data = RequestTemplate("GET", "/ok", client.origin.host_header, {}, auth=False).build(None, None)
            for _ in range(3):
                assert await client.request(data) == (200, b"ok", None)
            assert client.opened_on_demand == 0 and client.connections_made == 5
            assert len(raw.load_conns) == 1  # LIFO: the same kept-alive connection each time
        finally:
            client.close()


async def test_fast_client_preopen_against_a_closed_port_opens_nothing() -> None:
    async with RawServer() as raw:
        url = raw.url
    client = FastClient(url, timeout=2.0)  # the server is gone: connects are refused
    try:
        assert await client.preopen(3) == 0
        assert client.open_connections == 0
    finally:
        client.close()


async def test_open_model_preopens_from_rate_and_expected_latency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1 s expected latency at 100 req/s: 150 connections, more than a 1 s run ever has in flight.
    monkeypatch.setattr(engine_http, "PREOPEN_LATENCY_S", 1.0)
    async with RawServer() as raw:
        tester = tfp.LoadTester(raw.url, tfp.UserPool(count=2), ep("/ok"), max_in_flight=1000)
        run = await tester.run(duration=1, rate=100)
    pre = run.meta["preopen"]
    want = math.ceil(100 * 1.0 * engine_http.PREOPEN_HEADROOM)
    assert pre["wanted"] == want and pre["opened"] == want
    assert pre["on_demand"] == 0 and pre["peak_rate"] == 100
    assert not any("pre-opened" in w for w in run.meta.get("warnings", []))
    load = run.load_events()
    assert load.height == 100 and load["error"].null_count() == 100  # every arrival, one row each


async def test_preopen_is_capped_by_the_in_flight_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_http, "PREOPEN_LATENCY_S", 1.0)
    async with RawServer() as raw:
        tester = tfp.LoadTester(raw.url, tfp.UserPool(count=1), ep("/ok"), max_in_flight=7)
        run = await tester.run(duration=0.5, rate=100)
    assert run.meta["preopen"]["wanted"] == 7 and run.meta["preopen"]["opened"] == 7


async def test_too_few_preopened_connections_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing pre-opened: the first request has to open its own connection during the schedule.
    monkeypatch.setattr(engine_http, "PREOPEN_LATENCY_S", 0.0)
    async with RawServer() as raw:
        tester = tfp.LoadTester(raw.url, tfp.UserPool(count=1), ep("/ok"))
        run = await tester.run(duration=0.5, rate=20)
    pre = run.meta["preopen"]
    assert pre["opened"] == 0 and pre["on_demand"] >= 1
    assert any("had to open" in w for w in run.meta["warnings"])
    assert run.load_events().filter(pl.col("error").is_null()).height == 10


async def test_closed_model_does_not_preopen() -> None:
    async with RawServer() as raw:
        tester = tfp.LoadTester(raw.url, tfp.UserPool(count=1), ep("/ok"))
        run = await tester.run(duration=0.3, concurrency=2)
    assert "preopen" not in run.meta
