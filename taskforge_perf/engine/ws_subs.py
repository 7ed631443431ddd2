"""Subscriptions and task tracking of the WebSocket driver (the half of ``WsDriver`` that is not I/O).

``Subscriptions`` is the base class of ``engine.ws.WsDriver``: it remembers the tasks created over
HTTP (``on_task``), subscribes them on a socket of their creator (at once, or when the creator's
first socket exists), samples recent tasks every interval, resubscribes silent subscriptions and
decides which of them were lost (``engine.ws_lost``), and turns every frame into rows
(``_on_frame``): messages, isolation findings, errors.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.recorder import LiveCounters, WsRecorder
from taskforge_perf.engine.ws_conn import FINAL, Conn, TaskInfo, WsOptions, parse_message
from taskforge_perf.engine.ws_lost import LostCheck, LostTracker
from taskforge_perf.users import User

# Created tasks remembered (FIFO eviction). ~330 B each (TaskInfo, id, ints, dict slot): 50k = ~16 MB,
# 3 minutes of history at 270 tasks/s; 200k held ~65 MB and broke the soak's +50 MB bound (issue 12).
_TASKS_MAX = 50_000
_PROBED_MAX = 10_000  # (user, task) pairs the isolation probe subscribed, remembered
_SLICE = 10  # sample subscriptions sent per loop turn (each send ~40 µs: keeps loop lag < 1 ms)


class Subscriptions:
    """Task state, subscribe logic and frame handling; ``WsDriver`` adds the sockets."""

    # Set by WsDriver.__init__.
    options: WsOptions
    clock: Clock
    rng: random.Random
    recorder: WsRecorder
    counters: LiveCounters
    recent_tasks: collections.deque[str]
    by_user: dict[str, list[Conn]]
    conns: list[Conn]
    stats: dict[str, int]
    stopping: bool
    phase: Callable[[], str]
    want: int
    wait_info: dict[str, float] | None

    def _init_subscriptions(self) -> None:
        opts = self.options
        self.tasks: dict[str, TaskInfo] = {}
        #: Tasks subscribed at least once and not finished yet (what ``wait_for_tasks`` waits on).
        self.unfinished = 0
        #: Set whenever ``unfinished`` drops to 0.
        self.all_done = asyncio.Event()
        #: True while the driver only waits for tasks to finish: no sampled subscriptions.
        self.quiet = False
        self.lost = LostTracker(int(opts.lost_confirm_window * 1e9))
        self._rr = 0
        recent_max = self.recent_tasks.maxlen or 100
        self._recent_owned: collections.deque[tuple[str, str]] = collections.deque(maxlen=recent_max)
        self._recent_by_user: dict[str, collections.deque[str]] = {}
        self._recent_max = recent_max
        #: Tasks created before any socket of their user existed: subscribed when one does.
        self._waiting: dict[str, collections.deque[str]] = {}
        self._waiting_evicted = 0
        self._probed: dict[tuple[str, str], None] = {}
        self._pending: collections.deque[tuple[int, Conn, str, int, bool]] = collections.deque()
        self._after_ns = int(opts.resubscribe_after * 1e9)

    def _row(self, t: int, kind: str, c: Conn, **kw: Any) -> None:
        raise NotImplementedError

    def _confirm(self, c: Conn, ws: Any) -> None:
        raise NotImplementedError

    def _spawn(self, coro: Any) -> None:
        raise NotImplementedError

    def _send(self, ws: Any, text: str) -> None:
        raise NotImplementedError

    # --- tasks created over HTTP -------------------------------------------------------------------

    def on_task(self, task_id: str, task_type: str | None, user: User, t_end_ns: int) -> None:
        """``HttpDriver`` listener: remember the task; with own-task tracking, subscribe it now."""
        tasks = self.tasks
        if len(tasks) >= _TASKS_MAX:
            for key in list(tasks)[: _TASKS_MAX // 10]:
                old = tasks.pop(key)
                if old.subscribed_ns is not None and not old.done:
                    self.unfinished -= 1
            if self.unfinished == 0:
                self.all_done.set()
        info = tasks[task_id] = TaskInfo(task_type, t_end_ns, user.email)
        self._recent_owned.append((task_id, user.email))
        mine = self._recent_by_user.get(user.email)
        if mine is None:
            mine = self._recent_by_user[user.email] = collections.deque(maxlen=self._recent_max)
        mine.append(task_id)
        if not self.options.track_own_tasks or self.stopping:
            return
        conns = self.by_user.get(user.email)
        if not conns:
            waiting = self._waiting.get(user.email)
            if waiting is None:
                cap = self.options.max_subscriptions_per_conn
                waiting = self._waiting[user.email] = collections.deque(maxlen=cap)
            if len(waiting) == waiting.maxlen:
                self._waiting_evicted += 1
            waiting.append(task_id)
            return
        self._rr += 1
        self._subscribe(conns[self._rr % len(conns)], task_id, "own", info)

    def _adopt_waiting(self, c: Conn) -> None:
        """``c`` is the first socket of its user: take over the tasks the user created before."""
        waiting = self._waiting.pop(c.user.email, None)
        for tid in waiting or ():
            info = self.tasks.get(tid)
            if info is not None and not info.done:
                self._subscribe(c, tid, "own", info)

    @property
    def untracked_tasks(self) -> int:
        """Tasks created by a user that never had a socket (never subscribed by own tracking)."""
        return self._waiting_evicted + sum(len(w) for w in self._waiting.values())

    # --- subscribing -------------------------------------------------------------------------------

    def _subscribe(self, c: Conn, tid: str, reason: str, info: TaskInfo | None, resub: bool = False) -> None:
        t = self.clock.now()
        tracked = info is not None and not info.done
        if info is not None and tracked:
            subs = c.subs
            subs[tid] = t
            if len(subs) > self.options.max_subscriptions_per_conn:
                del subs[next(iter(subs))]
            if info.subscribed_ns is None:
                info.subscribed_ns = t
                self.unfinished += 1
        ws = c.ws
        if ws is None:
            return  # sent when the connection (re)opens
        self._send(ws, '{"type": "subscribe", "taskId": ' + json.dumps(tid) + "}")
        since_c = t - info.created_ns if info is not None else None
        ttype = info.task_type if info is not None else None
        kind = "resubscribe" if resub else "subscribe"
        self._row(t, kind, c, task_id=tid, task_type=ttype, status=reason, since_created_ns=since_c)
        if resub:
            self.stats["resubscribes"] += 1
            email = c.user.email
            solo = not any(o is not c and o.ws is not None for o in self.by_user.get(email, ()))
            self.lost.watch(c.index, email, tid, t, solo=solo)
        else:
            self.stats["subscribes"] += 1
        if tracked:
            self._pending.append((t + self._after_ns, c, tid, t, resub))

    def _lost_row(self, ch: LostCheck) -> None:
        info = self.tasks.get(ch.task_id)
        self.recorder.record(
            ch.t_answer,
            "error",
            ch.conn,
            ch.user,
            phase=self.phase(),
            task_id=ch.task_id,
            task_type=info.task_type if info is not None else None,
            since_subscribe_ns=ch.t_answer - ch.t_resub,
            error="lost_subscription",
        )
        self.stats["lost_subscriptions"] += 1

    def _resolve_lost(self) -> None:
        for ch in self.lost.due(self.clock.now()):
            self._lost_row(ch)

    async def _check_lost(self) -> None:
        """Resubscribe (once) every tracked subscription with no message within resubscribe_after,
        and record the resubscribes that proved a loss once their confirmation window passed.

        The resubscribes that fell due since the last tick are sent ``_SLICE`` per loop turn: at
        10,000 sockets sampling tasks still queued on the target, a tick found ~500 due at once
        (~20-35 ms of sends in one turn, the loop's p99 lag).
        """
        pending, clock = self._pending, self.clock
        tick = min(0.25, self.options.resubscribe_after / 4, self.options.lost_confirm_window / 4)
        while not self.stopping:
            await asyncio.sleep(tick)
            self._resolve_lost()
            now = clock.now()
            sent = 0
            while pending and pending[0][0] <= now and not self.stopping:
                _, c, tid, t_sub, resub = pending.popleft()
                info = self.tasks.get(tid)
                if info is None or info.done or info.last_msg_ns >= t_sub or resub:
                    continue
                if c.ws is None or c.closing or c.subs.get(tid) != t_sub:
                    continue  # restored on reconnect, or subscribed again since
                self._subscribe(c, tid, "own" if info.owner == c.user.email else "sample", info, resub=True)
                sent += 1
                if sent % _SLICE == 0:
                    await asyncio.sleep(0)

    async def _activity(self) -> None:
        """Every subscribe_interval: a sample of open connections subscribes to recent task ids.

        The sample is drawn as it is sent (a partial Fisher-Yates shuffle, ``_SLICE`` per loop turn,
        spread over the first half of the interval): no pass over every socket in one turn (listing
        and sampling 10,000 sockets took ~5 ms of the loop at once).
        """
        opts, rng = self.options, self.rng
        own = opts.sample_from == "own"
        while not self.stopping:
            await asyncio.sleep(opts.subscribe_interval)
            if self.quiet:
                continue
            pool = list(self.conns)  # a snapshot (one C-level copy); shuffled in place as it is drawn
            n = len(pool)
            k = opts.sample_size(min(self.counters.ws_open, n))
            recent = None if own else list(self.recent_tasks)
            pause = opts.subscribe_interval / 2 / (k // _SLICE + 1)
            picked = i = 0
            while picked < k and i < n and not self.stopping:
                j = rng.randrange(i, n)
                c = pool[j]
                pool[j] = pool[i]
                i += 1
                if c.ws is None or c.closing:
                    continue
                if picked and picked % _SLICE == 0:
                    await asyncio.sleep(pause)
                    if c.ws is None:
                        continue
                picked += 1
                src = self._recent_by_user.get(c.user.email) if own else recent
                if src:
                    tid = rng.choice(src)
                    self._subscribe(c, tid, "sample", self.tasks.get(tid))
                else:
                    self._subscribe(c, str(uuid.uuid4()), "random", None)
            if opts.isolation_probe and self._recent_owned and n:
                self._probe(pool)

    def _probe(self, pool: list[Conn]) -> None:
        """Subscribe one open connection to another user's recent task (isolation probe)."""
        rng = self.rng
        tid, owner = rng.choice(self._recent_owned)
        c = None
        for _ in range(32):  # a few random draws; a full pass only when they all miss
            d = rng.choice(pool)
            if d.ws is not None and not d.closing and d.user.email != owner:
                c = d
                break
        else:
            others = [d for d in pool if d.ws is not None and not d.closing and d.user.email != owner]
            if not others:
                return
            c = rng.choice(others)
        probed = self._probed
        if len(probed) >= _PROBED_MAX:
            del probed[next(iter(probed))]
        probed[(c.user.email, tid)] = None
        self._subscribe(c, tid, "probe", self.tasks.get(tid))

    # --- frames ------------------------------------------------------------------------------------

    def _on_frame(self, c: Conn, raw: str | bytes) -> None:
        t = self.clock.now()
        if not c.got_message:
            c.got_message = True
            if not c.confirmed:
                self._confirm(c, c.ws)
        kind, tid, status, progress, err = parse_message(raw)
        info = self.tasks.get(tid) if tid is not None else None
        if kind == "error":
            if info is not None:
                info.last_msg_ns = t
            self._row(t, "error", c, task_id=tid, error=err)
            if err == "unparsable":
                self.stats["unparsable"] += 1
            return
        if tid is not None and self.lost.open:
            self.lost.on_message(c.index, c.user.email, tid, (status, progress), t)
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
        if info.owner != c.user.email:
            # Another user's task: always a finding, "expected" only when cross-user sampling
            # (sample_from="all") subscribed this user to it; the probe's findings never are.
            user = c.user.email
            expected = self.options.sample_from == "all" and (user, tid) not in self._probed
            self._row(
                t,
                "isolation",
                c,
                task_id=tid,
                task_type=ttype,
                status=status,
                since_created_ns=since_c,
                error="expected" if expected else None,
            )
            self.stats["isolation_expected" if expected else "isolation"] += 1
        if status in FINAL and not info.done:
            info.done = True
            if info.subscribed_ns is not None:
                self.unfinished -= 1
                if self.unfinished == 0:
                    self.all_done.set()
            if status == "completed":
                self.counters.ws_completed += 1
        if info.done:
            c.subs.pop(tid, None)  # type: ignore[arg-type]

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
            "untracked_tasks": self.untracked_tasks,
            "unfinished_tasks": self.unfinished,
            "wait_for_tasks": self.wait_info,
            "options": self.options.to_dict(),
        }

    async def wait_for_tasks(self, timeout: float) -> float:
        """Keep the sockets open until every tracked task finished, or ``timeout`` s; seconds waited.

        Called after the load: no HTTP request is sent, sampled subscriptions pause, silent
        subscriptions are still resubscribed and dropped sockets reconnect.
        """
        clock = self.clock
        t0 = clock.now()
        self.quiet = True
        if self.unfinished > 0:
            self.all_done.clear()
            try:
                await asyncio.wait_for(self.all_done.wait(), timeout)
            except TimeoutError:
                pass
        waited = (clock.now() - t0) / 1e9
        self.wait_info = {"asked_s": timeout, "waited_s": waited, "unfinished": self.unfinished}
        return waited
