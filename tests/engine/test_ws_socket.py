"""The WebSocket driver's socket (``engine.ws_socket``): every data frame reaches the handler once,
in order, whether it came with the handshake, in fragments, as binary or as text that is not UTF-8;
the handshake's headers are freed; sends finish without a task."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from taskforge_perf.engine.ws_socket import Socket, send_now

pytestmark = pytest.mark.timeout(30)


async def _server(script: list[object], echo: list[str], done: asyncio.Event) -> tuple[object, int]:
    async def handle(ws: ServerConnection) -> None:
        for item in script:  # sent at once: the first ones may share a read with the handshake
            if isinstance(item, tuple):
                await ws.send(item[0], text=True)  # bytes sent as a text frame, unchecked
            else:
                await ws.send(item)  # type: ignore[arg-type]
        async for msg in ws:
            echo.append(str(msg))
            if len(echo) == 2:
                await ws.send("late")  # after start(): straight to the handler
                done.set()

    server = await serve(handle, "127.0.0.1", 0)
    return server, int(next(iter(server.sockets)).getsockname()[1])


async def test_frames_reach_the_handler_once_in_order() -> None:
    script: list[object] = [
        "first",
        ["frag", "mented"],  # one message in three frames (two data + an empty last)
        b"\x00binary",
        (b"\xffnot utf-8",),
        '{"taskId": "t1", "status": "processing"}',
    ]
    echo: list[str] = []
    done = asyncio.Event()
    server, port = await _server(script, echo, done)
    got: list[tuple[object, str | bytes]] = []
    try:
        ws = await connect(f"ws://127.0.0.1:{port}/", create_connection=Socket, compression=None)
        assert isinstance(ws, Socket)
        await asyncio.sleep(0.05)  # frames before start() are kept, not lost or sent elsewhere
        ws.start(lambda conn, payload: got.append((conn, payload)), "conn-7")
        assert ws.request is None and ws.response is not None and not list(ws.response.headers.raw_items())
        for _ in range(200):
            if len(got) == 5:
                break
            await asyncio.sleep(0.01)
        assert [p for _, p in got] == [
            "first",
            "fragmented",
            b"\x00binary",
            b"\xffnot utf-8",  # handed over as bytes: the connection stays open
            '{"taskId": "t1", "status": "processing"}',
        ]
        assert {c for c, _ in got} == {"conn-7"}
        assert send_now(ws, "a") is None and send_now(ws, "b") is None  # finished without a task
        await asyncio.wait_for(done.wait(), 10)
        assert echo == ["a", "b"]
        for _ in range(200):
            if len(got) == 6:
                break
            await asyncio.sleep(0.01)
        assert got[5] == ("conn-7", "late") and len(got) == 6
        with pytest.raises(RuntimeError, match="handler"):
            await ws.recv()  # websockets' queue is gone: nothing would ever arrive there
        closed = ws.closed()
        await ws.close()
        await asyncio.wait_for(closed, 5)
        assert ws.close_code == 1000
    finally:
        server.close()  # type: ignore[attr-defined]
        await server.wait_closed()  # type: ignore[attr-defined]


async def test_a_failing_handler_closes_the_socket() -> None:
    server, port = await _server(["boom"], [], asyncio.Event())
    try:
        ws = await connect(f"ws://127.0.0.1:{port}/", create_connection=Socket, compression=None)
        assert isinstance(ws, Socket)

        def handler(conn: object, payload: str | bytes) -> None:
            raise RuntimeError("handler bug")

        ws.start(handler, None)
        await asyncio.wait_for(ws.closed(), 5)  # as a failing reader: closed, not hung
    finally:
        server.close()  # type: ignore[attr-defined]
        await server.wait_closed()  # type: ignore[attr-defined]


async def test_opening_keeps_at_most_batch_size_handshakes_in_flight() -> None:
    """With no pause between batches, a batch still waits while ``batch_size`` handshakes are in
    flight (500 started every 20 ms had piled up at 10,000 sockets)."""
    import random

    from taskforge_perf.engine.clock import Clock
    from taskforge_perf.engine.recorder import LiveCounters, WsRecorder
    from taskforge_perf.engine.ws import WsDriver, WsOptions
    from taskforge_perf.users import User

    gate = asyncio.Event()
    seen: list[int] = []

    class Held(WsDriver):
        async def _conn_main(self, c: object) -> None:  # a handshake that waits for the gate
            self.opening += 1
            seen.append(self.opening)
            try:
                await gate.wait()
            finally:
                self.opening -= 1

    users = [User(f"u{i}@example.test", "pw", i) for i in range(3)]
    d = Held(
        "ws://127.0.0.1:9",
        None,  # type: ignore[arg-type]  # never used: no real handshake
        users,
        WsRecorder(),
        LiveCounters(),
        Clock(),
        random.Random(1),
        phase=lambda: "load",
        options=WsOptions(batch_size=2, batch_pause=0.0),
    )
    d.set_count(7)
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(d.conns) == 2 and max(seen) == 2  # the second batch waits for the first
    gate.set()
    for _ in range(200):
        if len(d.conns) == 7 and d.opening == 0:
            break
        await asyncio.sleep(0.01)
    assert len(d.conns) == 7 and max(seen) <= 2
    d.stopping = True
