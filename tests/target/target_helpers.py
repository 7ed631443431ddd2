"""Client helpers for the target tests (aiohttp clients against the real target)."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

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
    return msg.get("status") in ("completed", "failed") or "success" in msg
