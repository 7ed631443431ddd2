"""Client helpers for the target tests (aiohttp clients against the real target)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from taskforge_perf.target import ReferenceTarget

PASSWORD = "testpassword123"


def email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


async def call(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    """One request; returns ``(status, parsed JSON or text)``."""
    async with session.request(method, url, **kw) as r:
        text = await r.text()
        try:
            return r.status, await r.json(content_type=None)
        except ValueError:
            return r.status, text


async def signup(session: aiohttp.ClientSession, base_url: str, address: str | None = None) -> dict[str, Any]:
    status, body = await call(
        session,
        "POST",
        base_url + "/auth/signup",
        json={"email": address or email(), "password": PASSWORD},
    )
    assert status == 201, body
    return dict(body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_task(
    session: aiohttp.ClientSession, base_url: str, token: str, task_type: str = "generate-pdf"
) -> tuple[int, Any]:
    return await call(
        session,
        "POST",
        base_url + "/tasks",
        headers=bearer(token),
        json={"type": task_type, "payload": {"url": "https://example.com"}},
    )


async def collect(ws: Any, until: Any, within: float = 5.0, limit: int = 200) -> list[Any]:
    """Read JSON messages until ``until(msg)`` is true (bounded in time and count)."""
    import asyncio
    import json

    out: list[Any] = []
    async with asyncio.timeout(within):
        while len(out) < limit:
            msg = json.loads(await ws.recv())
            out.append(msg)
            if until(msg):
                return out
    raise AssertionError(f"no final message after {limit} messages: {out[-3:]}")


def final(msg: Any) -> bool:
    return msg.get("status") in ("completed", "failed") or "success" in msg or msg.get("cached") is True


# --- acceptance helpers (issue 17) ---

IMAGE = {"imageUrl": "https://example.com/images/cat.jpg", "width": 320, "height": 200}


def sub(task_id: str) -> str:
    return json.dumps({"type": "subscribe", "taskId": task_id})


async def next_second() -> None:
    """Tokens carry integer times: wait for the wall clock's next second (deterministic)."""
    await asyncio.sleep(1.0 - time.time() % 1.0 + 0.01)


async def refresh(s: aiohttp.ClientSession, base: str, token: str) -> tuple[int, Any]:
    return await call(s, "POST", base + "/auth/refresh", json={"refreshToken": token})


async def rejected_1005(url: str) -> float:
    """Open a socket that the gateway accepts then closes with no code; seconds until closed."""
    t0 = time.monotonic()
    async with connect(url) as ws:
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(3):
                await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1005
    return time.monotonic() - t0


async def task(s: aiohttp.ClientSession, base: str, token: str, ttype: str, payload: Any) -> str:
    status, body = await call(
        s, "POST", base + "/tasks", headers=bearer(token), json={"type": ttype, "payload": payload}
    )
    assert status == 202, body
    return str(body["taskId"])


async def watched(t: ReferenceTarget, s: aiohttp.ClientSession, token: str, ttype: str, payload: Any) -> Any:
    """Create a task, subscribe once the handler is attached, return its messages up to the final."""
    async with connect(f"{t.ws_url}/?token={token}") as ws:
        await asyncio.sleep(0.1)  # past the async session check (2 ms)
        task_id = await task(s, t.base_url, token, ttype, payload)
        await ws.send(sub(task_id))
        return task_id, await collect(ws, final, within=10)
