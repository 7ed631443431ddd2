"""``real_quirks=True`` reproduces every quirk of the real system listed in DESIGN.md section 4."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from target_helpers import bearer, call, collect, create_task, final, signup
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from taskforge_perf.target import ReferenceTarget

HANDLER_READY = 0.2  # > token_check_delay (50 ms) of the quirks_target fixture


def sub(task_id: str) -> str:
    return json.dumps({"type": "subscribe", "taskId": task_id})


async def _ready(url: str) -> ClientConnection:
    ws = await connect(url)
    await asyncio.sleep(HANDLER_READY)  # let the server finish its async token check
    return ws


async def test_http_quirks(quirks_target: ReferenceTarget) -> None:
    base = quirks_target.base_url
    async with aiohttp.ClientSession() as s:
        tokens = await signup(s, base)
        status, err = await call(s, "POST", base + "/auth/logout", headers=bearer(tokens["accessToken"]))
        assert status == 401 and err["success"] is False and "stack" in err["error"]
        status, err = await call(s, "POST", base + "/auth/refresh", json={"refreshToken": "junk"})
        assert status == 500 and err["error"]["message"] == "jwt malformed"
        assert err["error"]["stack"].startswith("Error: jwt malformed")
        status, _ = await call(
            s, "POST", base + "/auth/refresh", json={"refreshToken": tokens["refreshToken"]}
        )
        assert status == 200
        status, _ = await call(
            s, "POST", base + "/auth/refresh", json={"refreshToken": tokens["refreshToken"]}
        )
        assert status == 403  # reuse: every session revoked...
        # ...yet POST /tasks still answers 202 (the real session check is not awaited)
        status, body = await create_task(s, base, tokens["accessToken"])
        assert status == 202 and body["taskId"]
        status, body = await create_task(s, base, "bad-token")
        assert status == 401 and body == {"message": "Invalid or expired token"}


async def test_bad_token_socket_closed_without_code(quirks_target: ReferenceTarget) -> None:
    for query in ("", "?token=garbage"):
        t0 = time.monotonic()
        async with connect(f"{quirks_target.ws_url}/{query}") as ws:  # accepted first
            with pytest.raises(ConnectionClosed) as info:
                async with asyncio.timeout(2):
                    await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1005
        assert info.value.rcvd.reason == ""
        assert time.monotonic() - t0 < 1.0


async def _completed_task(
    t: ReferenceTarget, s: aiohttp.ClientSession, token: str, task_type: str
) -> tuple[str, list[Any]]:
    ws = await _ready(f"{t.ws_url}/?token={token}")
    try:
        task_id = (await create_task(s, t.base_url, token, task_type))[1]["taskId"]
        await ws.send(sub(task_id))
        return task_id, await collect(ws, final, within=5)
    finally:
        await ws.close()


async def test_subscribe_race_and_image_shape(quirks_target: ReferenceTarget) -> None:
    t = quirks_target
    async with aiohttp.ClientSession() as s:
        token = (await signup(s, t.base_url))["accessToken"]
        task_id, msgs = await _completed_task(t, s, token, "resize-image")
        assert len(msgs) == 1 and msgs[0]["success"] is True and "status" not in msgs[0]
        assert msgs[0]["taskId"] == task_id and msgs[0]["url"].endswith(".png")
        async with connect(f"{t.ws_url}/?token={token}") as ws:
            await ws.send(sub(task_id))  # at once: lost before the handler is attached
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)
            await ws.send(sub(task_id))  # the handler is attached now: cached status at once
            assert json.loads(await asyncio.wait_for(ws.recv(), 1)) == msgs[0]
        _, pdf = await _completed_task(t, s, token, "generate-pdf")
        assert [m.get("status") for m in pdf] == ["processing", "completed"]


async def test_closing_any_socket_unsubscribes_the_user(quirks_target: ReferenceTarget) -> None:
    t = quirks_target
    async with aiohttp.ClientSession() as s:
        alice = (await signup(s, t.base_url))["accessToken"]
        bob = (await signup(s, t.base_url))["accessToken"]
        a1 = await _ready(f"{t.ws_url}/?token={alice}")
        a2 = await _ready(f"{t.ws_url}/?token={alice}")
        b1 = await _ready(f"{t.ws_url}/?token={bob}")
        try:
            task_id = (await create_task(s, t.base_url, alice, "generate-pdf"))[1]["taskId"]
            await a1.send(sub(task_id))
            await b1.send(sub(task_id))
            await asyncio.sleep(0.05)
            await a2.close()  # alice is now unsubscribed from every task
            msgs = await collect(b1, final, within=5)  # bob (leak) still gets everything
            assert msgs[-1]["status"] == "completed"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(a1.recv(), 0.2)
        finally:
            await asyncio.gather(a1.close(), b1.close())


async def test_outbox_batches_and_undispatched_types(quirks_target: ReferenceTarget) -> None:
    t = quirks_target  # outbox_interval 0.5 s, outbox_batch 3
    async with aiohttp.ClientSession() as s:
        token = (await signup(s, t.base_url))["accessToken"]
        ws = await _ready(f"{t.ws_url}/?token={token}")
        try:
            t0 = time.monotonic()
            ids = [(await create_task(s, t.base_url, token, "compress-video"))[1]["taskId"] for _ in range(7)]
            for _ in range(2):
                await create_task(s, t.base_url, token, "etl-data")
            for task_id in ids:
                await ws.send(sub(task_id))
            first: dict[str, float] = {}
            async with asyncio.timeout(6):
                while len(first) < 7:
                    m = json.loads(await ws.recv())
                    first.setdefault(m["taskId"], time.monotonic() - t0)
        finally:
            await ws.close()
        starts = sorted(first.values())
        # three polls 0.5 s apart: 3 + 3 + 1 tasks
        assert starts[2] - starts[0] < 0.25 and starts[3] - starts[2] > 0.3
        assert starts[6] - starts[3] > 0.3 and starts[6] - starts[0] < 2.0
        queued = (await t.ametrics())["taskforge_tasks_queued"]
        assert queued[("etl-data",)] >= 2  # never dispatched by the real outbox
