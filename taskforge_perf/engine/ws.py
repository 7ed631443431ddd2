"""The WebSocket driver: connections to the status gateway, subscriptions, status tracking.

``WsDriver`` holds N connections assigned to users round-robin (each authenticated with its
user's current access token in ``?token=``), opens them in staggered batches, subscribes on an
interval to recent task ids, subscribes every task created over HTTP on a connection of its
creator (``on_task`` is an ``HttpDriver.task_listeners`` entry), resubscribes subscriptions that
got no answer, reconnects after server drops, and records every event as a ``WsRecorder`` row.

Rows (``kind``): ``connect`` (``handshake_ns``), ``connect_error`` (``error`` timeout / refused /
rejected / auth / cancelled / other; ``code`` the close code, or the HTTP status of a refused
upgrade), ``subscribe`` / ``resubscribe`` (``status`` = the reason, see
``ws_conn.SUBSCRIBE_REASONS``; a resubscribe is sent when a tracked subscription got nothing within
``resubscribe_after``), ``message`` (task id, status, progress, since_created_ns,
since_subscribe_ns), ``isolation`` (an update for a task another user of this run created, always
recorded; ``error="expected"`` when cross-user sampling asked for it), ``close`` (``code``;
``error`` null when we closed, "dropped" when the server closed or reset an established socket),
``reconnect`` (a successful re-open after a drop), ``error`` (``unparsable`` frame,
``server_error`` for a ``{"type": "error"}`` answer, ``lost_subscription`` when a resubscribe
proved the first subscription lost, see ``ws_lost``).

Rejection: only the gateway's refusal of a token is ``rejected`` (and makes the user's token be
renewed): an upgrade refused with 401/403, or a socket closed with no code (1005) or a policy
close (1008) within 200 ms of opening and before any message: one ``connect_error`` row
(``error="rejected"``) and no ``connect`` row. An abrupt close (1006, a reset) is a ``dropped``
close however soon it comes, and renews no token. A handshake still in flight when the run ends
(or the connection is retired) is a ``connect_error`` row with ``error="cancelled"``. Tokens are
never recorded.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from taskforge_perf.engine.auth import AuthClient, AuthFailed
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.recorder import LiveCounters, WsRecorder
from taskforge_perf.engine.ws_conn import (
    REJECT_CODES,
    REJECT_STATUSES,
    REJECT_WINDOW_NS,
    Conn,
    WsOptions,
)
from taskforge_perf.engine.ws_socket import Socket, send_now
from taskforge_perf.engine.ws_subs import Subscriptions
from taskforge_perf.users import User, round_robin_assignment

__all__ = ["WsDriver", "WsOptions"]

#: Subscriptions are resent this long after one of a user's sockets closed, once the gateway has
#: handled the close (resent earlier, the gateway's cleanup would drop them again).
RESTORE_AFTER_CLOSE_S = 0.25


class WsDriver(Subscriptions):
    """N connections to ``ws_url`` for ``users``; every event becomes a row of ``recorder``."""

    def __init__(
        self,
        ws_url: str,
        auth: AuthClient,
        users: Sequence[User],
        recorder: WsRecorder,
        counters: LiveCounters,
        clock: Clock,
        rng: random.Random,
        *,
        phase: Callable[[], str],
        recent_tasks: collections.deque[str] | None = None,
        options: WsOptions | None = None,
    ) -> None:
        if not users:
            raise ValueError("WsDriver needs at least one logged-in user")
        self.ws_url = ws_url.rstrip("/")
        self.auth = auth
        self.recorder = recorder
        self.counters = counters
        self.clock = clock
        self.rng = rng
        self.phase = phase
        self.options = options if options is not None else WsOptions()
        self.recent_tasks = recent_tasks if recent_tasks is not None else collections.deque(maxlen=100)
        self.conns: list[Conn] = []  # wanted connections, in opening order
        self.by_user: dict[str, list[Conn]] = {}
        self.want = 0
        self.stopping = False
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "opened",
                "rejected",
                "connect_errors",
                "dropped",
                "reconnects",
                "messages",
                "subscribes",
                "resubscribes",
                "lost_subscriptions",
                "lost_unresolved",
                "isolation",
                "isolation_expected",
                "unparsable",
                "unknown_shape",
                "max_open",
                "closed",
            ),
            0,
        )
        self._pick = round_robin_assignment(users, rng)
        self._next = 0
        self._init_subscriptions()
        self.wait_info: dict[str, float] | None = None
        self._bg: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._opener: asyncio.Task[None] | None = None
        self._frame_handler = self._on_frame  # one bound method shared by every socket
        #: Handshakes in flight (first opens and reconnects).
        self.opening = 0

    # --- rows --------------------------------------------------------------------------------------

    def _row(self, t: int, kind: str, c: Conn, **kw: Any) -> None:
        self.recorder.record(t, kind, c.index, c.user.email, phase=self.phase(), **kw)

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, count: int) -> None:
        """Start opening ``count`` connections (staggered) and the activity loops; returns at once."""
        self._loops = [
            asyncio.ensure_future(self._activity()),
            asyncio.ensure_future(self._check_lost()),
        ]
        self.set_count(count)

    def set_count(self, count: int) -> None:
        """Hold ``count`` connections from now on (opens or closes the difference)."""
        if self.stopping:
            return
        self.want = max(0, int(count))
        extra = self.conns[self.want :]
        if extra:
            del self.conns[self.want :]
            for c in extra:
                self._retire(c)
        if len(self.conns) < self.want and (self._opener is None or self._opener.done()):
            self._opener = asyncio.ensure_future(self._open_batches())

    def _retire(self, c: Conn) -> None:
        c.closing = c.closed_by_us = True
        conns = self.by_user.get(c.user.email)
        if conns is not None and c in conns:
            conns.remove(c)
        if c.ws is not None:
            self._spawn(c.ws.close(1000))
        elif c.task is not None:
            c.task.cancel()

    async def _open_batches(self) -> None:
        """Start ``batch_size`` connections, pause ``batch_pause`` s, and so on; a batch waits
        while ``batch_size`` handshakes are still in flight. Unbounded (500 every 20 ms at 10,000
        sockets) the handshakes piled up past what the loop handles (~2,000/s): loop turns of
        100s of ms, open-model starts up to ~1.3 s late while opening, ~2,000 handshake
        timeouts."""
        opts = self.options
        while not self.stopping and len(self.conns) < self.want:
            while self.opening >= opts.batch_size and not self.stopping:  # noqa: ASYNC110 - opening only
                await asyncio.sleep(max(opts.batch_pause, 0.005))
            for _ in range(min(opts.batch_size, self.want - len(self.conns))):
                c = Conn(self._next, self._pick())
                self._next += 1
                self.conns.append(c)
                self.by_user.setdefault(c.user.email, []).append(c)
                self._adopt_waiting(c)
                c.task = asyncio.ensure_future(self._conn_main(c))
            if len(self.conns) < self.want:
                await asyncio.sleep(opts.batch_pause)  # 0 still lets the batch's handshakes begin

    async def close_all(self, timeout: float = 5.0) -> None:
        """Close every socket with a close frame (1000), record close rows; bounded by ``timeout``."""
        self.stopping = True
        self._resolve_lost()
        self.stats["lost_unresolved"] = self.lost.open  # answered too late to be judged
        for t in (*self._loops, self._opener):
            if t is not None and not t.done():
                t.cancel()
        tasks = []
        for c in self.conns:
            c.closing = c.closed_by_us = True
            if c.ws is not None:
                self._spawn(c.ws.close(1000))
            elif c.task is not None:
                c.task.cancel()
        tasks = [c.task for c in self.conns if c.task is not None]
        tasks += [t for t in self._loops if t is not None]
        if self._opener is not None:
            tasks.append(self._opener)
        if tasks:
            _, left = await asyncio.wait(tasks, timeout=timeout)
            for t in left:
                t.cancel()
            if left:
                await asyncio.wait(left, timeout=1.0)
        for t in list(self._bg):
            t.cancel()

    def _spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self._bg.add(t)
        t.add_done_callback(self._done)

    def _done(self, t: asyncio.Task[Any]) -> None:
        self._bg.discard(t)
        if not t.cancelled():
            t.exception()  # a send on a closed socket: the close is recorded by its reader

    def _send(self, ws: Any, text: str) -> None:
        """Send a text frame; a task only when the send has to wait (``ws_socket.send_now``)."""
        rest = send_now(ws, text)
        if rest is not None:
            self._spawn(rest)

    # --- one connection ----------------------------------------------------------------------------

    async def _conn_main(self, c: Conn) -> None:
        opts = self.options
        first = True
        try:
            while not c.closing and not self.stopping:
                if not first:
                    if not opts.reconnect:
                        return
                    await asyncio.sleep(opts.backoff(c.attempt))
                    c.attempt += 1
                    if c.closing or self.stopping:
                        return
                token = await self._open(c, reconnect=not first)
                first = False
                if token is None:
                    continue
                rejected = await self._read(c)
                if rejected:
                    try:
                        await self.auth.reauth(c.user, token)
                    except Exception:  # noqa: BLE001 - the next connect records the failure
                        pass
        finally:
            ws = c.ws
            if ws is not None:  # cancelled while open: do not leave it half-open
                c.ws = None
                self.counters.ws_open -= 1
                ws.transport.abort()
                self._row(self.clock.now(), "close", c, code=1006, error="cancelled")
                self.stats["closed"] += 1

    async def _open(self, c: Conn, *, reconnect: bool) -> str | None:
        """Open the socket; records connect_error and returns None on failure, else the token."""
        clock, opts = self.clock, self.options
        try:
            token = await self.auth.token(c.user)
        except AuthFailed:
            self._connect_error(c, "auth")
            return None
        url = f"{self.ws_url}/?token={quote(token, safe='')}"
        t0 = clock.now()
        self.opening += 1
        try:
            try:
                ws = await connect(
                    url,
                    open_timeout=opts.connect_timeout,
                    ping_interval=None,
                    close_timeout=2.0,
                    compression=None,
                    proxy=None,
                    user_agent_header=None,
                    create_connection=Socket,
                )
            finally:
                self.opening -= 1
        except asyncio.CancelledError:
            self._connect_error(c, "cancelled")  # the run ended (or retired it) mid-handshake
            raise
        except TimeoutError:
            self._connect_error(c, "timeout")
            return None
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status not in REJECT_STATUSES:
                self._connect_error(c, "other", status)
                return None
            self._connect_error(c, "rejected", status)
            try:
                await self.auth.reauth(c.user, token)
            except Exception:  # noqa: BLE001 - the next connect records the failure
                pass
            return None
        except ConnectionRefusedError:
            self._connect_error(c, "refused")
            return None
        except (OSError, InvalidHandshake, Exception):  # noqa: BLE001 - every failure is a row
            self._connect_error(c, "other")
            return None
        t1 = clock.now()
        c.ws, c.opened_ns, c.got_message = ws, t1, False
        c.confirmed = False
        c.handshake_ns = t1 - t0
        c.reconnecting = reconnect
        cast(Socket, ws).start(self._frame_handler, c)  # frames from now on go to _on_frame
        self.counters.ws_open += 1
        if self.counters.ws_open > self.stats["max_open"]:
            self.stats["max_open"] = self.counters.ws_open
        asyncio.get_running_loop().call_later(REJECT_WINDOW_NS / 1e9, self._confirm, c, ws)
        if c.closing:
            self._spawn(ws.close(1000))
        else:
            for tid in list(c.subs):
                info = self.tasks.get(tid)
                if info is None or info.done:
                    del c.subs[tid]
                elif reconnect:
                    self._subscribe(c, tid, "restore", info)
                else:  # subscribed while the socket was opening
                    self._subscribe(c, tid, "own" if info.owner == c.user.email else "sample", info)
        return token

    def _connect_error(self, c: Conn, error: str, code: int | None = None) -> None:
        self._row(self.clock.now(), "connect_error", c, error=error, code=code)
        self.stats["connect_errors"] += 1
        if error == "rejected":
            self.stats["rejected"] += 1

    def _confirm(self, c: Conn, ws: Any) -> None:
        """The socket outlived the rejection window (or got a message): record its connect row."""
        if c.confirmed or c.ws is not ws:
            return
        c.confirmed = True
        c.attempt = 0
        self._row(c.opened_ns, "connect", c, handshake_ns=c.handshake_ns)
        self.stats["opened"] += 1
        if c.reconnecting:
            self._row(c.opened_ns, "reconnect", c)
            self.stats["reconnects"] += 1

    async def _read(self, c: Conn) -> bool:
        """Wait until the socket closes (its frames reach ``_on_frame`` as they are parsed, see
        ``ws_socket``); record the close. True when it was a rejection."""
        ws = c.ws
        await ws.closed()
        code = ws.close_code if ws.close_code is not None else 1006
        t = self.clock.now()
        if not c.confirmed:  # no message yet, and within the rejection window (or just past it)
            quick = t - c.opened_ns < REJECT_WINDOW_NS
            if not c.closed_by_us and quick and code in REJECT_CODES:
                c.confirmed = True
                c.ws = None
                self.counters.ws_open -= 1
                self._connect_error(c, "rejected", code)
                return True
            self._confirm(c, ws)
        c.ws = None
        self.counters.ws_open -= 1
        self.stats["closed"] += 1
        if c.closed_by_us:
            self._row(t, "close", c, code=code)
        else:
            self._row(t, "close", c, code=code, error="dropped")
            self.stats["dropped"] += 1
        if not self.stopping:  # after the gateway has handled the close (it unsubscribes then)
            asyncio.get_running_loop().call_later(RESTORE_AFTER_CLOSE_S, self._restore_user, c)
        return code == 1008  # a policy close of an established socket: renew the token

    def _restore_user(self, closed: Conn) -> None:
        """Resend the user's unfinished subscriptions on its other open sockets.

        The real gateway unsubscribes a user from every task when any one of its sockets closes,
        so updates would silently stop; against a gateway that does not, this only repeats
        subscribes (answered with the cached status, if any).
        """
        if self.stopping:
            return
        others = [
            c
            for c in self.by_user.get(closed.user.email, ())
            if c is not closed and c.ws is not None and not c.closing
        ]
        for c in others:
            for tid in list(c.subs):
                info = self.tasks.get(tid)
                if info is not None and not info.done:
                    self._subscribe(c, tid, "restore", info)
        if closed.closing and others:  # retired for good: its own subscriptions move to the others
            for i, tid in enumerate(list(closed.subs)):
                info = self.tasks.get(tid)
                if info is not None and not info.done:
                    self._subscribe(others[i % len(others)], tid, "restore", info)
            closed.subs.clear()
