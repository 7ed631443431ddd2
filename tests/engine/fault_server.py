"""A small aiohttp server on 127.0.0.1 with the TaskForge auth routes and a few fault routes.

It counts every request per path (the server-side truth the tests assert on):
- ``/ok``: 200 ``ok``;
- ``/busy``: ``busy_status`` (429) with ``Retry-After: retry_after`` (when not None);
- ``/big``: a body of ``big_size`` bytes (200);
- ``/slow``: 200 ``ok`` after ``slow_s`` seconds;
- ``/stall``: never answers (until the server stops);
- ``/turns``: 200 ``ok`` for the first ``turn_after`` requests, then 302 to ``/ok``;
- ``/revoked``: 200 ``ok``, except that the token of the ``revoke_at``-th request is revoked
  from then on: every request carrying it gets a 401 (a refresh or login gives a new one).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from aiohttp import web


class FaultServer:
    """``async with FaultServer() as s: s.url ...``; ``s.hits["/busy"]`` counts served requests."""

    def __init__(
        self,
        *,
        retry_after: str | None = "1",
        busy_status: int = 429,
        big_size: int = 0,
        slow_s: float = 0.01,
        turn_after: int = 0,
        revoke_at: int = 0,
    ) -> None:
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.turn_after = turn_after
        self.revoke_at = revoke_at
        self.revoked: set[str] = set()
        self._stopping = asyncio.Event()
        self.busy_status = busy_status
        self.big_size = big_size
        self.hits: collections.Counter[str] = collections.Counter()
        self.issued = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._big = b""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultServer:
        app = web.Application()
        app.router.add_get("/health", self._plain)
        app.router.add_get("/ok", self._plain)
        app.router.add_route("*", "/busy", self._busy)
        app.router.add_get("/big", self._bigbody)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/stall", self._stall)
        app.router.add_get("/turns", self._turns)
        app.router.add_get("/revoked", self._revoked)
        for p in ("signup", "login", "refresh"):
            app.router.add_post(f"/auth/{p}", self._tokens)
        app.router.add_post("/auth/logout", self._plain)
        self._big = b"x" * self.big_size
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        self._stopping.set()  # stalled requests end, so that cleanup need not wait for them
        await self._runner.cleanup()

    async def _plain(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        await request.read()
        return web.Response(body=b"ok")

    async def _busy(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        await request.read()
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        return web.Response(status=self.busy_status, body=b"slow down", headers=headers)

    async def _bigbody(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        return web.Response(body=self._big)

    async def _slow(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        await asyncio.sleep(self.slow_s)
        return web.Response(body=b"ok")

    async def _stall(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        await self._stopping.wait()
        return web.Response(body=b"never")

    async def _turns(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        if self.hits[request.path] > self.turn_after:
            raise web.HTTPFound("/ok")
        return web.Response(body=b"ok")

    async def _revoked(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        token = request.headers.get("Authorization", "")
        if self.hits[request.path] == self.revoke_at:
            self.revoked.add(token)
        if token in self.revoked:
            return web.Response(status=401, body=b'{"error":"token revoked"}')
        return web.Response(body=b"ok")

    async def _tokens(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        await request.read()
        self.issued += 1
        body: dict[str, Any] = {"accessToken": f"tok-{self.issued}", "refreshToken": f"r-{self.issued}"}
        return web.json_response(body, status=201 if request.path.endswith("signup") else 200)
