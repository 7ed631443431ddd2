"""The WebSocket driver: connections to the status gateway, subscriptions, status tracking.

``WsDriver`` holds N connections assigned to users round-robin (each authenticated with its
user's current access token in ``?token=``), opens them in staggered batches, subscribes on an
interval to recent task ids, subscribes every task created over HTTP on a connection of its
creator (``on_task`` is an ``HttpDriver.task_listeners`` entry), resubscribes subscriptions that
got no answer, reconnects after server drops, and records every event as a ``WsRecorder`` row.

Rows (``kind``): ``connect`` (``handshake_ns``), ``connect_error`` (``error`` timeout / refused /
rejected / auth / other; ``code`` the close code, or the HTTP status of a refused handshake),
``subscribe`` / ``resubscribe`` (``status`` = the reason, see ``ws_conn.SUBSCRIBE_REASONS``; a
resubscribe is sent when a tracked subscription got nothing within ``resubscribe_after``),
``message`` (task id, status, progress, since_created_ns, since_subscribe_ns), ``isolation`` (an
update for a task the receiving user did not create, isolation probe only), ``close`` (``code``;
``error`` null when we closed, "dropped" when the server closed an established socket, "rejected"
for a 1008 policy close), ``reconnect`` (a successful re-open after a drop), ``error``
(``unparsable`` frame, ``server_error`` for a ``{"type": "error"}`` answer, ``lost_subscription``
when the gateway answers a resubscribe at once with a cached status: the first subscription was
lost). A socket that closes with 1005/1006 and no message within 200 ms of opening, or with 1008
before any message, is a rejection: one ``connect_error`` row (``error="rejected"``) and no
``connect`` row. Tokens are never recorded.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from taskforge_perf.engine.auth import AuthClient, AuthFailed
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.recorder import LiveCounters, WsRecorder
from taskforge_perf.engine.ws_conn import (
    FINAL,
    REJECT_WINDOW_NS,
    Conn,
    TaskInfo,
    WsOptions,
    parse_message,
)
from taskforge_perf.users import User, round_robin_assignment

__all__ = ["WsDriver", "WsOptions"]

# Created tasks remembered (FIFO eviction). ~330 B each (TaskInfo, id, ints, dict slot): 50k = ~16 MB,
# 3 minutes of history at 270 tasks/s; 200k held ~65 MB and broke the soak's +50 MB bound (issue 12).
_TASKS_MAX = 50_000
#: A resubscribe answered within this time carries the gateway's cached status: the task had a status
#: the first subscription never delivered, so that subscription was lost. No quick answer means the
#: task simply had no status yet (still queued): not counted as lost.
LOST_CONFIRM_NS = 250_000_000
#: Subscriptions are resent this long after one of a user's sockets closed, once the gateway has
#: handled the close (resent earlier, the gateway's cleanup would drop them again).
RESTORE_AFTER_CLOSE_S = 0.25
_SLICE = 10  # sample subscriptions sent per loop turn (each send ~40 µs: keeps loop lag < 1 ms)


class WsDriver:
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
        self.tasks: dict[str, TaskInfo] = {}
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
                "isolation",
                "unparsable",
                "unknown_shape",
                "untracked_tasks",
                "max_open",
                "closed",
            ),
            0,
        )
        self._pick = round_robin_assignment(users, rng)
        self._next = 0
        self._rr = 0
        self._recent_owned: collections.deque[tuple[str, str]] = collections.deque(maxlen=100)
        self._pending: collections.deque[tuple[int, Conn, str, int, bool]] = collections.deque()
        self._resub_wait: dict[tuple[int, str], int] = {}  # (conn, task) -> resubscribe time
        self._bg: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._opener: asyncio.Task[None] | None = None
        self._after_ns = int(self.options.resubscribe_after * 1e9)

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
        opts = self.options
        while not self.stopping and len(self.conns) < self.want:
            for _ in range(min(opts.batch_size, self.want - len(self.conns))):
                c = Conn(self._next, self._pick())
                self._next += 1
                self.conns.append(c)
                self.by_user.setdefault(c.user.email, []).append(c)
                c.task = asyncio.ensure_future(self._conn_main(c))
            if len(self.conns) < self.want and opts.batch_pause > 0:
                await asyncio.sleep(opts.batch_pause)

    async def close_all(self, timeout: float = 5.0) -> None:
        """Close every socket with a close frame (1000), record close rows; bounded by ``timeout``."""
        self.stopping = True
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
        try:
            ws = await connect(
                url,
                open_timeout=opts.connect_timeout,
                ping_interval=None,
                close_timeout=2.0,
                compression=None,
                proxy=None,
                user_agent_header=None,
            )
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._connect_error(c, "timeout")
            return None
        except InvalidStatus as exc:
            self._connect_error(c, "rejected", exc.response.status_code)
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
        self.counters.ws_open += 1
        if self.counters.ws_open > self.stats["max_open"]:
            self.stats["max_open"] = self.counters.ws_open
        asyncio.get_running_loop().call_later(REJECT_WINDOW_NS / 1e9, self._confirm, c, ws)
        if c.closing:
            self._spawn(ws.close(1000))
        else:
            for tid in list(c.subs):
                info = self.tasks.get(tid)
                if info is not None and info.done:
                    del c.subs[tid]
                else:
                    self._subscribe(c, tid, "restore", info)
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
        """Read until the socket closes; record the close. True when it was a rejection."""
        ws = c.ws
        on_frame = self._on_frame
        try:
            async for raw in ws:
                on_frame(c, raw)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken socket is a close row below
            ws.transport.abort()
        try:
            await asyncio.wait_for(ws.wait_closed(), 2.0)
        except (TimeoutError, Exception):  # noqa: BLE001
            ws.transport.abort()
        code = ws.close_code if ws.close_code is not None else 1006
        t = self.clock.now()
        if not c.confirmed:
            quick = t - c.opened_ns < REJECT_WINDOW_NS and code in (1005, 1006)
            if not c.closed_by_us and (quick or code == 1008):
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
            err = "rejected" if code == 1008 else "dropped"
            self._row(t, "close", c, code=code, error=err)
            self.stats["dropped"] += 1
        if not self.stopping:  # after the gateway has handled the close (it unsubscribes then)
            asyncio.get_running_loop().call_later(RESTORE_AFTER_CLOSE_S, self._restore_user, c)
        return code == 1008

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

    # --- frames ------------------------------------------------------------------------------------

    def _on_frame(self, c: Conn, raw: str | bytes) -> None:
        t = self.clock.now()
        if not c.got_message:
            c.got_message = True
            if not c.confirmed:
                self._confirm(c, c.ws)
        kind, tid, status, progress, err = parse_message(raw)
        info = self.tasks.get(tid) if tid is not None else None
        if self._resub_wait and tid is not None:
            t_resub = self._resub_wait.pop((c.index, tid), None)
            if t_resub is not None and t - t_resub <= LOST_CONFIRM_NS:
                self._row(
                    t,
                    "error",
                    c,
                    task_id=tid,
                    task_type=info.task_type if info else None,
                    since_subscribe_ns=t - t_resub,
                    error="lost_subscription",
                )
                self.stats["lost_subscriptions"] += 1
        if kind == "error":
            if info is not None:
                info.last_msg_ns = t
            self._row(t, "error", c, task_id=tid, error=err)
            if err == "unparsable":
                self.stats["unparsable"] += 1
            return
        ttype = since_c = since_s = None
        if info is not None:
            ttype = info.task_type
            since_c = t - info.created_ns
            info.last_msg_ns = t
            ts = c.subs.get(tid) or info.subscribed_ns  # type: ignore[arg-type]
            if ts is not None:
                since_s = t - ts
        self._row(
            t,
            "message",
            c,
            task_id=tid,
            task_type=ttype,
            status=status,
            progress=progress,
            since_created_ns=since_c,
            since_subscribe_ns=since_s,
            error=err,
        )
        self.counters.ws_messages += 1
        self.stats["messages"] += 1
        if err is not None:
            self.stats["unknown_shape"] += 1
        if info is None:
            if status == "completed":
                self.counters.ws_completed += 1
            return
        if self.options.isolation_probe and info.owner != c.user.email:
            self._row(
                t,
                "isolation",
                c,
                task_id=tid,
                task_type=ttype,
                status=status,
                since_created_ns=since_c,
            )
            self.stats["isolation"] += 1
        if status in FINAL and not info.done:
            info.done = True
            if status == "completed":
                self.counters.ws_completed += 1
        if info.done:
            c.subs.pop(tid, None)  # type: ignore[arg-type]

    # --- subscriptions -----------------------------------------------------------------------------

    def on_task(self, task_id: str, task_type: str | None, user: User, t_end_ns: int) -> None:
        """``HttpDriver`` listener: remember the task; with own-task tracking, subscribe it now."""
        tasks = self.tasks
        if len(tasks) >= _TASKS_MAX:
            for key in list(tasks)[: _TASKS_MAX // 10]:
                del tasks[key]
        info = tasks[task_id] = TaskInfo(task_type, t_end_ns, user.email)
        self._recent_owned.append((task_id, user.email))
        if not self.options.track_own_tasks or self.stopping:
            return
        conns = self.by_user.get(user.email)
        if not conns:
            self.stats["untracked_tasks"] += 1
            return
        self._rr += 1
        self._subscribe(conns[self._rr % len(conns)], task_id, "own", info)

    def _subscribe(self, c: Conn, tid: str, reason: str, info: TaskInfo | None, resub: bool = False) -> None:
        t = self.clock.now()
        tracked = info is not None and not info.done
        if tracked:
            subs = c.subs
            subs[tid] = t
            if len(subs) > self.options.max_subscriptions_per_conn:
                del subs[next(iter(subs))]
            if info.subscribed_ns is None:  # type: ignore[union-attr]
                info.subscribed_ns = t  # type: ignore[union-attr]
        ws = c.ws
        if ws is None:
            return  # sent when the connection (re)opens
        self._spawn(ws.send(json.dumps({"type": "subscribe", "taskId": tid})))
        since_c = t - info.created_ns if info is not None else None
        ttype = info.task_type if info is not None else None
        if resub:
            self._row(
                t,
                "resubscribe",
                c,
                task_id=tid,
                task_type=ttype,
                status=reason,
                since_created_ns=since_c,
            )
            self.stats["resubscribes"] += 1
            self._resub_wait[(c.index, tid)] = t
        else:
            self._row(
                t,
                "subscribe",
                c,
                task_id=tid,
                task_type=ttype,
                status=reason,
                since_created_ns=since_c,
            )
            self.stats["subscribes"] += 1
        if tracked:
            self._pending.append((t + self._after_ns, c, tid, t, resub))

    async def _check_lost(self) -> None:
        """Resubscribe (once) every tracked subscription with no message within resubscribe_after."""
        pending, clock, waits = self._pending, self.clock, self._resub_wait
        tick = min(0.25, self.options.resubscribe_after / 4)
        while not self.stopping:
            await asyncio.sleep(tick)
            now = clock.now()
            for key in [k for k, t in waits.items() if now - t > LOST_CONFIRM_NS]:
                del waits[key]  # no quick answer: the task had no status yet
            while pending and pending[0][0] <= now:
                _, c, tid, t_sub, resub = pending.popleft()
                info = self.tasks.get(tid)
                if info is None or info.done or info.last_msg_ns >= t_sub or resub:
                    continue
                if c.ws is None or c.closing or c.subs.get(tid) != t_sub:
                    continue  # restored on reconnect, or subscribed again since
                self._subscribe(c, tid, "own" if info.owner == c.user.email else "sample", info, resub=True)

    async def _activity(self) -> None:
        """Every subscribe_interval: a sample of open connections subscribes to recent task ids."""
        opts, rng = self.options, self.rng
        while not self.stopping:
            await asyncio.sleep(opts.subscribe_interval)
            open_conns = [c for c in self.conns if c.ws is not None and not c.closing]
            k = opts.sample_size(len(open_conns))
            recent = list(self.recent_tasks)
            chosen = rng.sample(open_conns, k) if k else []
            # Large samples are spread over the first half of the interval (no loop-lag burst).
            pause = opts.subscribe_interval / 2 / (len(chosen) // _SLICE + 1)
            for i, c in enumerate(chosen):
                if i and i % _SLICE == 0:
                    await asyncio.sleep(pause)
                if c.ws is None:
                    continue
                if recent:
                    tid = rng.choice(recent)
                    self._subscribe(c, tid, "sample", self.tasks.get(tid))
                else:
                    self._subscribe(c, str(uuid.uuid4()), "random", None)
            if opts.isolation_probe and self._recent_owned and open_conns:
                tid, owner = rng.choice(self._recent_owned)
                others = [c for c in open_conns if c.user.email != owner]
                if others:
                    self._subscribe(rng.choice(others), tid, "probe", self.tasks.get(tid))

    # --- figures -----------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """JSON-safe figures for run metadata (no tokens)."""
        per_user = [len(v) for v in self.by_user.values()]
        return {
            **self.stats,
            "wanted": self.want,
            "open": self.counters.ws_open,
            "users": len(self.by_user),
            "conns_per_user_min": min(per_user) if per_user else 0,
            "conns_per_user_max": max(per_user) if per_user else 0,
            "options": self.options.to_dict(),
        }
