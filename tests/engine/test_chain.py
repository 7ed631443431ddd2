"""Closed-model virtual users on the fast client driven by callbacks (engine.http_chain).

The chain replaces the per-request future/task step; these tests pin what it must keep: every
request it sends is answered and recorded exactly once, cancellation turns the requests in
flight into "cancelled" rows, and an error raised while recording reaches the virtual user's
task instead of stalling it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

import taskforge_perf as tfp
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.fastclient import FastClient
from taskforge_perf.engine.http import DriverState, HttpDriver
from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters
from taskforge_perf.users import User

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class CountingServer:
    """Keep-alive HTTP/1.1 answering ``answer`` requests, then holding every later one."""

    def __init__(self, answer: int = 1 << 60) -> None:
        self.answer = answer
        self.received = 0
        self.answered = 0
        self.changed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.received += 1
                self.changed.set()
                if self.answered >= self.answer:
                    await reader.read()  # hold it until the client gives up
                    return
                self.answered += 1
                writer.write(OK)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def wait_received(self, n: int) -> None:
        while self.received < n:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 30)


@pytest.fixture
async def server() -> AsyncIterator[CountingServer]:
    srv = CountingServer()
    srv.server = await asyncio.start_server(srv._serve, "127.0.0.1", 0)
    srv.url = f"http://127.0.0.1:{srv.server.sockets[0].getsockname()[1]}"
    yield srv
    srv.server.close()


def driver(url: str, recorder: HttpRecorder | None = None) -> tuple[HttpDriver, FastClient]:
    fast = FastClient(url, timeout=20.0)
    user = User(email="u@example.com", password="p")
    mix = tfp.RequestMix([tfp.Endpoint("GET /ok", "GET", "/ok", auth=False)])
    drv = HttpDriver(
        None,  # type: ignore[arg-type] - the fast path never uses the aiohttp session here
        url,
        mix,
        None,  # type: ignore[arg-type] - no auth on this endpoint
        lambda: user,
        recorder if recorder is not None else HttpRecorder(),
        LiveCounters(),
        Clock(),
        random.Random(1),
        state=DriverState(phase="load"),
        fast=fast,
    )
    return drv, fast


async def test_chain_sends_past_fast_client_request_and_records_every_answer(
    server: CountingServer,
) -> None:
    drv, fast = driver(server.url)
    calls = 0
    request = fast.request

    async def counted(data: bytes) -> tuple[int, bytes, str | None]:
        nonlocal calls
        calls += 1
        return await request(data)

    fast.request = counted  # type: ignore[method-assign]
    vus: dict[int, asyncio.Task[None]] = {}
    drv.end_ns = drv.clock.now() + 500_000_000
    drv.set_level(4, vus)
    await asyncio.wait_for(asyncio.gather(*vus.values()), 30)
    fast.close()
    rows = drv.recorder.frame()
    assert rows.height == server.answered and rows.height > 200
    assert rows["error"].null_count() == rows.height and (rows["status"] == 200).all()
    # Only each user's first request (template not built, no connection yet) takes the
    # coroutine path; the rest go through the callbacks.
    assert 4 <= calls <= 8
    assert drv.counters.in_flight == 0 and drv.counters.requests == rows.height


async def test_cancelled_users_record_their_requests_in_flight(server: CountingServer) -> None:
    server.answer = 50
    drv, fast = driver(server.url)
    vus: dict[int, asyncio.Task[None]] = {}
    drv.set_level(3, vus)
    await server.wait_received(53)  # 50 answered, one held per user
    await drv.drain(0.0)  # cancels the users: their requests in flight are rows at once
    rows = drv.recorder.frame()
    fast.close()
    assert rows.height == 53
    assert rows["error"].value_counts().sort("error").rows() == [(None, 50), ("cancelled", 3)]
    assert drv.counters.in_flight == 0


class FailingRecorder(HttpRecorder):
    def record(self, *args: Any, **kwargs: Any) -> None:
        if self.rows >= 20:
            raise RuntimeError("recorder broke")
        super().record(*args, **kwargs)


async def test_an_error_while_recording_reaches_the_virtual_user(server: CountingServer) -> None:
    drv, fast = driver(server.url, FailingRecorder())
    vus: dict[int, asyncio.Task[None]] = {}
    drv.set_level(2, vus)
    done, _ = await asyncio.wait(vus.values(), timeout=30)
    fast.close()
    assert len(done) == 2
    for t in done:
        exc = t.exception()
        assert isinstance(exc, RuntimeError) and str(exc) == "recorder broke"


async def test_users_with_their_own_client_use_its_connections(server: CountingServer) -> None:
    """A group's region client (``User.via``): the chain takes that client's connections,
    and the connection it keeps goes back when the next user needs the other client."""
    fast = FastClient(server.url, timeout=20.0)
    region = FastClient(server.url, timeout=20.0)
    direct = User(email="direct@example.com", password="p")
    routed = User(email="routed@example.com", password="p")
    routed.via = region
    turn = iter(range(1 << 30))
    mix = tfp.RequestMix([tfp.Endpoint("GET /ok", "GET", "/ok", auth=False)])
    drv = HttpDriver(
        None,  # type: ignore[arg-type] - the fast path never uses the aiohttp session here
        server.url,
        mix,
        None,  # type: ignore[arg-type] - no auth on this endpoint
        lambda: routed if next(turn) % 3 == 0 else direct,
        HttpRecorder(),
        LiveCounters(),
        Clock(),
        random.Random(1),
        state=DriverState(phase="load"),
        fast=fast,
    )
    vus: dict[int, asyncio.Task[None]] = {}
    drv.end_ns = drv.clock.now() + 500_000_000
    drv.set_level(2, vus)
    await asyncio.wait_for(asyncio.gather(*vus.values()), 30)
    rows = drv.recorder.frame()
    users = dict(rows["user"].value_counts().rows())
    assert rows.height == server.answered and users["routed@example.com"] > 50
    assert rows["error"].null_count() == rows.height
    # Each client holds at most one connection per user, all idle again at the end.
    assert 1 <= region.connections_made <= 2 and 1 <= fast.connections_made <= 2
    assert len(region._idle) == region.open_connections and not region._busy and not fast._busy
    fast.close()
    region.close()
