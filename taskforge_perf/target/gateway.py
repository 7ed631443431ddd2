"""The status WebSocket gateway of the reference target, on its own port (``websockets`` server).

``ws://host:port/?token=<access>``. A missing, invalid, expired or revoked token closes the socket
with 1008 (policy violation); with ``real_quirks`` the socket is accepted and then closed with an
empty close frame (the client sees 1005, no reason): at once for a missing token or one whose
signature or expiry fails (the real gateway's synchronous ``jwt.verify``, 0.2-1.5 ms), and after
the async session check of ``token_check_delay`` for a revoked token or an access token a refresh
or a login replaced. During that check incoming messages are lost (the subscribe race).

The status cache keeps the last message of each task; with ``real_quirks`` it is cleared when a
message with ``status`` completed/failed passes (so a resubscribe to a finished pdf task gets
nothing), while the video and image workers' final messages, which have no status, stay cached.

Clients send ``{"type": "subscribe", "taskId": ...}``; the last status published for the task,
if any, is sent back at once. Updates reach every socket of every subscribed user (``leak=True``,
as the real system) or only the owner's sockets (``leak=False``, where a non-owner's subscribe is
answered ``{"type": "error", ...}``). A user's subscriptions end when their last socket closes, or
when any of their sockets closes with ``real_quirks``.
"""

from __future__ import annotations

import asyncio
import json
import random
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from taskforge_perf.target.auth import AuthError, AuthStore
from taskforge_perf.target.config import TargetConfig
from taskforge_perf.target.metrics import Metrics
from taskforge_perf.target.workers import Workers

_CACHE_MAX = 100_000


class Gateway:
    """Subscriptions, the status cache and the WebSocket server of one target process."""

    def __init__(self, config: TargetConfig, auth: AuthStore, workers: Workers, metrics: Metrics) -> None:
        self._cfg = config
        self._auth = auth
        self._workers = workers
        self._metrics = metrics
        self._rng = random.Random(None if config.seed is None else config.seed + 1)
        self._subs: dict[str, set[str]] = {}  # task id -> subscribed user ids
        self._user_subs: dict[str, set[str]] = {}  # user id -> task ids
        self._sockets: dict[str, set[ServerConnection]] = {}  # user id -> open sockets
        self._cache: dict[str, str] = {}  # task id -> last published JSON
        self._server: Server | None = None
        self._dropper: asyncio.Task[None] | None = None
        self._garbage: asyncio.Task[None] | None = None

    # --- publishing (called by workers) ---------------------------------------------------------

    def publish(self, task_id: str, owner: str, text: str, final_status: bool = False) -> None:
        """Send ``text`` to the task's subscribers; ``final_status``: it has status completed/failed."""
        cache = self._cache
        if final_status and self._cfg.real_quirks:
            cache.pop(task_id, None)
        else:
            if task_id not in cache and len(cache) >= _CACHE_MAX:
                for key in list(cache)[: _CACHE_MAX // 10]:
                    del cache[key]
            cache[task_id] = text
        users = self._subs.get(task_id)
        if not users:
            return
        if not self._cfg.leak:
            users = {owner} & users
        targets = [ws for u in users for ws in self._sockets.get(u, ())]
        if targets:
            broadcast(targets, text)
            self._metrics.ws_messages += len(targets)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> int:
        """Listen on ``config.ws_port`` (0 = a free port) and return the real port."""
        cfg = self._cfg
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.ws_port,
            ping_interval=cfg.ping_interval,
            ping_timeout=cfg.ping_interval,
            max_size=1 << 16,
        )
        if cfg.ws_drop_every or cfg.ws_drop_rate:
            self._dropper = asyncio.create_task(self._drop_loop())
        if cfg.ws_garbage_every:
            self._garbage = asyncio.create_task(self._garbage_loop(cfg.ws_garbage_every))
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def stop(self) -> None:
        for task in (self._dropper, self._garbage):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._server is not None:
            self._server.close(close_connections=True)
            try:
                await asyncio.wait_for(self._server.wait_closed(), 3.0)
            except TimeoutError:
                pass

    async def _garbage_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            socks = [ws for s in self._sockets.values() for ws in s]
            broadcast(socks, "<<not json>>")
            broadcast(socks, json.dumps({"hello": "world"}))

    async def _drop_loop(self) -> None:
        every, rate = self._cfg.ws_drop_every, self._cfg.ws_drop_rate
        tick = every if every and not rate else 1.0 if not every else min(every, 1.0)
        elapsed = 0.0
        while True:
            await asyncio.sleep(tick)
            elapsed += tick
            socks = [ws for s in self._sockets.values() for ws in s]
            if every and elapsed + 1e-9 >= every:
                elapsed = 0.0
                victims = socks
            elif rate:
                victims = [ws for ws in socks if self._rng.random() < rate * tick]
            else:
                continue
            for ws in victims:
                ws.transport.abort()
            self._metrics.ws_dropped += len(victims)

    # --- one connection -------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        token = (parse_qs(urlsplit(path).query).get("token") or [""])[0]
        user = self._check(token, session=False)
        if user is not None and self._cfg.real_quirks:
            # The real gateway attaches its message handler only after an async session check:
            # whatever arrives meanwhile is lost.
            discard = asyncio.create_task(self._discard(ws))
            await asyncio.sleep(self._cfg.token_check_delay)
            discard.cancel()
            await asyncio.gather(discard, return_exceptions=True)
        if user is not None:
            user = self._check(token, session=True)
        if user is None:
            self._metrics.ws_rejected += 1
            if self._cfg.real_quirks:
                await ws.close(code=None)  # type: ignore[arg-type]  # empty close frame: 1005
            else:
                await ws.close(1008, "Invalid or expired token")
            return
        self._metrics.ws_accepted += 1
        self._metrics.ws_open += 1
        self._sockets.setdefault(user, set()).add(ws)
        try:
            async for raw in ws:
                await self._on_message(ws, user, raw)
        except ConnectionClosed:
            pass
        finally:
            self._metrics.ws_open -= 1
            self._forget(ws, user)

    async def _discard(self, ws: ServerConnection) -> None:
        """Read and drop frames until cancelled (counted: the ground truth of lost subscribes)."""
        try:
            async for _ in ws:
                self._metrics.ws_frames_lost += 1
        except ConnectionClosed:
            pass

    def _check(self, token: str, *, session: bool) -> str | None:
        """The user of ``token``, or None; ``session=False`` checks only its signature and expiry."""
        if not token:
            return None
        try:
            user, sid = self._auth.verify_access(token)
        except AuthError:
            return None
        return user if not session or self._auth.session_live(sid) else None

    async def _on_message(self, ws: ServerConnection, user: str, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        task_id = msg.get("taskId")
        if not isinstance(task_id, str):
            return
        kind = msg.get("type")
        if kind == "subscribe":
            if not self._cfg.leak and self._workers.owner_of(task_id) != user:
                await ws.send(json.dumps({"type": "error", "taskId": task_id, "message": "Not your task"}))
                return
            self._subs.setdefault(task_id, set()).add(user)
            self._user_subs.setdefault(user, set()).add(task_id)
            cached = self._cache.get(task_id)
            if cached is not None:
                await ws.send(cached)
                self._metrics.ws_messages += 1
        elif kind == "unsubscribe":
            self._unsubscribe(user, task_id)

    def _unsubscribe(self, user: str, task_id: str) -> None:
        users = self._subs.get(task_id)
        if users is not None:
            users.discard(user)
            if not users:
                del self._subs[task_id]
        tasks = self._user_subs.get(user)
        if tasks is not None:
            tasks.discard(task_id)

    def _forget(self, ws: ServerConnection, user: str) -> None:
        socks = self._sockets.get(user)
        if socks is not None:
            socks.discard(ws)
            if not socks:
                del self._sockets[user]
        if self._cfg.real_quirks or user not in self._sockets:
            for task_id in self._user_subs.pop(user, set()):
                users = self._subs.get(task_id)
                if users is not None:
                    users.discard(user)
                    if not users:
                        del self._subs[task_id]
