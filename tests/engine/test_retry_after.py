"""429 / 503 with Retry-After: closed-model users wait, the open model keeps its schedule (12.5)."""

from __future__ import annotations

import email.utils
import time

import pytest

import taskforge_perf as tfp
from taskforge_perf.engine.failures import retry_after_s
from taskforge_perf.engine.fastclient import header_value
from taskforge_perf.errors import ConfigError
from taskforge_perf.mix import Endpoint
from tests.engine.fault_server import FaultServer

CLIENTS = ("fast", "aiohttp")
BUSY = tfp.RequestMix([Endpoint("GET /busy", "GET", "/busy", auth=False)])


def test_retry_after_values() -> None:
    assert retry_after_s("2") == 2.0 and retry_after_s(b" 0.5 ") == 0.5
    assert retry_after_s(None) is None and retry_after_s("later") is None and retry_after_s("inf") is None
    assert retry_after_s("-3") == 0.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    secs = retry_after_s(date, now=now)
    assert secs is not None and 29 <= secs <= 31
    head = b"HTTP/1.1 429 Too Many\r\nContent-Length: 0\r\nretry-after: 7\r\n\r\n"
    assert header_value(head, b"retry-after") == b"7" and header_value(head, b"location") is None


def test_honor_retry_after_is_validated() -> None:
    with pytest.raises(ConfigError, match="honor_retry_after"):
        tfp.LoadTester("http://127.0.0.1:9", honor_retry_after="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("client", CLIENTS)
async def test_closed_model_waits_for_retry_after(client: str, status: int) -> None:
    async with FaultServer(retry_after="1", busy_status=status) as server:
        tester = tfp.LoadTester(server.url, tfp.UserPool(count=1), BUSY, seed=1, http_client=client)
        run = await tester.run(duration=1.5, concurrency=3)
    # Each of the 3 users sends once, waits 1 s, sends once more, waits past the end: <= 6.
    assert 3 <= server.hits["/busy"] <= 6, server.hits
    assert run.load_events().height == server.hits["/busy"]
    ra = run.meta["retry_after"]
    assert ra["answers"] == ra["with_header"] == server.hits["/busy"] and ra["honored"] is True
    assert ra["asked_s"] == ra["answers"] * 1.0
    assert run.meta["pauses"]["count"] == ra["answers"]  # every answer paused its user
    assert any("Retry-After" in w for w in run.meta["warnings"])
    assert run.meta["stopped"] == "completed"


async def test_a_long_retry_after_ends_with_the_run() -> None:
    async with FaultServer(retry_after="60") as server:
        tester = tfp.LoadTester(server.url, tfp.UserPool(count=1), BUSY, seed=4)
        run = await tester.run(duration=0.5, concurrency=2)
    assert server.hits["/busy"] == 2  # one request per user, then the 60 s pause ...
    assert run.duration_s < 10 and run.meta["stopped"] == "completed"  # ... cut short by the end


@pytest.mark.parametrize("client", CLIENTS)
async def test_retry_after_can_be_ignored(client: str) -> None:
    async with FaultServer(retry_after="1") as server:
        tester = tfp.LoadTester(
            server.url, tfp.UserPool(count=1), BUSY, seed=2, http_client=client, honor_retry_after=False
        )
        run = await tester.run(duration=0.5, concurrency=2)
    assert server.hits["/busy"] > 50
    assert run.meta["retry_after"]["honored"] is False and run.meta["pauses"]["count"] == 0


@pytest.mark.parametrize("client", CLIENTS)
async def test_open_model_records_them_and_keeps_its_schedule(client: str) -> None:
    async with FaultServer(retry_after="5") as server:
        tester = tfp.LoadTester(server.url, tfp.UserPool(count=1), BUSY, seed=3, http_client=client)
        run = await tester.run(duration=1.0, rate=50)
    load = run.load_events()
    assert load.height == server.hits["/busy"] == 50
    assert (load["status"] == 429).all()
    assert run.meta["retry_after"]["with_header"] == 50 and run.meta["pauses"]["count"] == 0
    # Each request started on its schedule: none waited the 5 s the server asked for.
    lateness_ms = (load["t_start"] - load["t_intended"]).max() / 1e6  # type: ignore[operator]
    assert lateness_ms < 500, lateness_ms
