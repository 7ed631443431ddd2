"""The status gateway of DESIGN.md section 4 (default mode) and its leak / drop / ping knobs."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from target_helpers import call, collect, create_task, final, signup
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from taskforge_perf.target import ReferenceTarget


def sub(task_id: str) -> str:
    return json.dumps({"type": "subscribe", "taskId": task_id})


async def test_bad_token_closes_1008(target: ReferenceTarget) -> None:
    async with aiohttp.ClientSession() as s:
        tokens = await signup(s, target.base_url)
        await call(
            s,
            "POST",
            target.base_url + "/auth/logout",
            headers={"Authorization": f"Bearer {tokens['accessToken']}"},
        )
    for query in ("", "?token=", "?token=garbage", f"?token={tokens['accessToken']}"):
        async with connect(f"{target.ws_url}/{query}") as ws:
            with pytest.raises(ConnectionClosed) as info:
                async with asyncio.timeout(2):
                    await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008, query


async def test_subscribe_processing_completed_and_cache(target: ReferenceTarget) -> None:
    async with aiohttp.ClientSession() as s:
        tokens = await signup(s, target.base_url)
        token = tokens["accessToken"]
        async with connect(f"{target.ws_url}/?token={token}") as ws:
            _, body = await create_task(s, target.base_url, token, "generate-pdf")
            task_id = body["taskId"]
            t0 = time.monotonic()
            await ws.send(sub(task_id))
            msgs = await collect(ws, final)
            elapsed = time.monotonic() - t0
        assert [m["status"] for m in msgs] == ["processing", "completed"]  # the real pdf worker
        assert [m["progress"] for m in msgs] == [10, 100]
        assert all(m["taskId"] == task_id for m in msgs)
        assert msgs[-1]["fileUrl"].endswith(".pdf") and msgs[0]["message"]
        assert 0.2 < elapsed < 3.0  # default generate-pdf duration is 300 ms
        # a later subscriber gets the cached status at once
        async with connect(f"{target.ws_url}/?token={token}") as ws:
            t0 = time.monotonic()
            await ws.send(sub(task_id))
            cached = json.loads(await asyncio.wait_for(ws.recv(), 2))
            assert cached == msgs[-1] and time.monotonic() - t0 < 0.5
        m = await target.ametrics()
        assert m["taskforge_tasks_finished_total"][("generate-pdf", "completed")] >= 1


async def _two_users(t: ReferenceTarget, s: aiohttp.ClientSession) -> tuple[str, str]:
    a = (await signup(s, t.base_url))["accessToken"]
    b = (await signup(s, t.base_url))["accessToken"]
    return a, b


async def test_leak_updates_reach_every_socket_of_subscribed_users(
    target: ReferenceTarget,
) -> None:
    async with aiohttp.ClientSession() as s:
        owner, other = await _two_users(target, s)
        async with (
            connect(f"{target.ws_url}/?token={other}") as spy,
            connect(f"{target.ws_url}/?token={other}") as bystander,
            connect(f"{target.ws_url}/?token={owner}") as mine,
        ):
            task_id = (await create_task(s, target.base_url, owner, "resize-image"))[1]["taskId"]
            await spy.send(sub(task_id))
            await mine.send(sub(task_id))
            got = await asyncio.gather(*(collect(w, final) for w in (spy, bystander, mine)))
        for msgs in got:  # the real image worker: {success, url} only
            assert msgs[-1] == {"taskId": task_id, "success": True, "url": msgs[-1]["url"]}


async def test_no_leak_only_owner_gets_updates() -> None:
    async with ReferenceTarget(leak=False, hash_iterations=1000, seed=3) as t:
        async with aiohttp.ClientSession() as s:
            owner, other = await _two_users(t, s)
            async with (
                connect(f"{t.ws_url}/?token={other}") as spy,
                connect(f"{t.ws_url}/?token={owner}") as mine,
            ):
                task_id = (await create_task(s, t.base_url, owner))[1]["taskId"]
                await spy.send(sub(task_id))
                await mine.send(sub(task_id))
                answer = json.loads(await asyncio.wait_for(spy.recv(), 2))
                assert answer["type"] == "error" and answer["taskId"] == task_id
                msgs = await collect(mine, final)
                assert msgs[-1]["status"] == "completed"
                with pytest.raises(TimeoutError):  # nothing else reaches the non-owner
                    await asyncio.wait_for(spy.recv(), 0.3)


async def test_ws_drop_every_aborts_sockets() -> None:
    async with ReferenceTarget(ws_drop_every=0.5, hash_iterations=1000) as t:
        async with aiohttp.ClientSession() as s:
            token = (await signup(s, t.base_url))["accessToken"]
        t0 = time.monotonic()
        async with connect(f"{t.ws_url}/?token={token}") as ws:
            with pytest.raises(ConnectionClosed) as info:
                async with asyncio.timeout(3):
                    await ws.recv()
        assert time.monotonic() - t0 < 1.5
        assert info.value.rcvd is None  # abrupt: no close frame (1006)
        assert (await t.ametrics())["taskforge_ws_dropped_total"][()] >= 1


async def test_ws_drop_rate_aborts_some_sockets() -> None:
    async with ReferenceTarget(ws_drop_rate=0.5, hash_iterations=1000, seed=5) as t:
        async with aiohttp.ClientSession() as s:
            token = (await signup(s, t.base_url))["accessToken"]
        socks = [await connect(f"{t.ws_url}/?token={token}") for _ in range(10)]
        try:
            await asyncio.sleep(2.5)
            closed = sum(ws.state.name == "CLOSED" for ws in socks)
        finally:
            await asyncio.gather(*(ws.close() for ws in socks))
        assert 5 <= closed <= 10  # P(survive 2 s) = 0.25 each


async def test_ping_drops_sockets_that_do_not_answer() -> None:
    async with ReferenceTarget(ping_interval=0.3, hash_iterations=1000) as t:
        async with aiohttp.ClientSession() as s:
            token = (await signup(s, t.base_url))["accessToken"]
        host, port = t.ws_url.removeprefix("ws://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"GET /?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        t0 = time.monotonic()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert b" 101 " in head
            frames = b""
            async with asyncio.timeout(4):
                while chunk := await reader.read(1024):  # never answer the pings
                    frames += chunk
            elapsed = time.monotonic() - t0
        finally:
            writer.close()
            await writer.wait_closed()
        assert frames[:1] == b"\x89"  # a ping frame came first
        assert 0.4 < elapsed < 2.0  # ping at 0.3 s, dropped ~0.3 s later
        # a client that answers pings stays connected
        async with connect(f"{t.ws_url}/?token={token}") as ws:
            await asyncio.sleep(1.0)
            assert ws.state.name == "OPEN"


async def _finished_task(t: ReferenceTarget, s: aiohttp.ClientSession, token: str) -> str:
    """A resize-image task that has completed (its status is in the gateway's cache)."""
    task_id = (await create_task(s, t.base_url, token, "resize-image"))[1]["taskId"]
    deadline = time.monotonic() + 5
    while (await t.ametrics()).get("taskforge_tasks_finished_total", {}).get(
        ("resize-image", "completed"), 0
    ) < 1:
        assert time.monotonic() < deadline, "the task never finished"
        await asyncio.sleep(0.05)
    return str(task_id)


async def test_real_quirks_loses_only_subscribes_sent_within_2ms_of_opening() -> None:
    """DESIGN.md section 4: a subscribe is lost only when sent 0-2 ms after the socket opens; from
    ~10 ms on every subscribe registers. The target counts the frames it lost (ground truth)."""
    async with ReferenceTarget(real_quirks=True, outbox_interval=0.05, hash_iterations=1000, seed=4) as t:
        assert t.config.token_check_delay == 0.002
        async with aiohttp.ClientSession() as s:
            token = (await signup(s, t.base_url))["accessToken"]
            task_id = await _finished_task(t, s, token)
        answered = 0
        for _ in range(3):  # 20 ms after opening: registered (a 50 ms window would lose all three)
            async with connect(f"{t.ws_url}/?token={token}") as ws:
                await asyncio.sleep(0.02)
                await ws.send(sub(task_id))
                try:
                    cached = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                except TimeoutError:
                    continue
                assert cached["taskId"] == task_id and cached["success"] is True
                answered += 1
        assert answered >= 1
        frames_lost = (await t.ametrics())["taskforge_ws_frames_lost_total"][()]
        assert frames_lost == 3 - answered


async def test_frames_lost_counts_a_subscribe_sent_at_once() -> None:
    async with ReferenceTarget(
        real_quirks=True, outbox_interval=0.05, token_check_delay=0.2, hash_iterations=1000, seed=6
    ) as t:
        async with aiohttp.ClientSession() as s:
            token = (await signup(s, t.base_url))["accessToken"]
            task_id = await _finished_task(t, s, token)
        async with connect(f"{t.ws_url}/?token={token}") as ws:
            await ws.send(sub(task_id))  # at once: read and dropped before the handler attaches
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.4)
            assert (await t.ametrics())["taskforge_ws_frames_lost_total"][()] == 1
            await ws.send(sub(task_id))  # now registered: the cached status at once
            assert json.loads(await asyncio.wait_for(ws.recv(), 1.0))["taskId"] == task_id
        assert (await t.ametrics())["taskforge_ws_frames_lost_total"][()] == 1
