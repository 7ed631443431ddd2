"""A small aiohttp server on 127.0.0.1 with the TaskForge auth routes and a few fault routes.

It counts every request per path (the server-side truth the tests assert on):
- ``/ok``: 200 ``ok``;
- ``/busy``: ``busy_status`` (429) with ``Retry-After: retry_after`` (when not None);
- ``/big``: a body of ``big_size`` bytes (200).
"""

from __future__ import annotations

import collections
from typing import Any

from aiohttp import web


class FaultServer:
    """``async with FaultServer() as s: s.url ...``; ``s.hits["/busy"]`` counts served requests."""

    def __init__(self, *, retry_after: str | None = "1", busy_status: int = 429, big_size: int = 0) -> None:
        self.retry_after = retry_after
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

    async def _tokens(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        await request.read()
        self.issued += 1
        body: dict[str, Any] = {"accessToken": f"tok-{self.issued}", "refreshToken": f"r-{self.issued}"}
        return web.json_response(body, status=201 if request.path.endswith("signup") else 200)
