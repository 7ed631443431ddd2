"""HTTP drivers: the closed model (virtual users) and the open model (arrival schedule).

Both follow one schedule object (a ``StressPlan``): ``at(t)`` gives the wanted level at elapsed
time t and ``arrival_times()`` the open model's intended start times. Every request, failed or
not, becomes one row through ``HttpDriver.send``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from taskforge_perf.engine.auth import AuthClient, AuthFailed
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.failures import classify, status_error
from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters
from taskforge_perf.mix import Endpoint, RequestMix
from taskforge_perf.users import User

#: An open-model request counts as late when it starts this long after its intended time.
LATE_AFTER_NS = 2_000_000
#: uvloop turns shorter sleeps into busy polling (FACTS.md); wake-ups are batched instead.
MIN_SLEEP_S = 0.001

TaskListener = Callable[[str, "str | None", User, int], None]


class Schedule(Protocol):
    """What the drivers need of a plan."""

    @property
    def duration(self) -> float: ...

    def at(self, t: float) -> Any: ...

    def arrival_times(self, start: float = 0.0) -> Iterator[float]: ...


@dataclass
class PhaseStats:
    """Per-phase scheduling figures (open model: planned / on time / late / cap hits)."""

    planned: int = 0
    on_time: int = 0
    late: int = 0
    cap_hits: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON-safe copy."""
        return dict(self.__dict__)


@dataclass
class DriverState:
    """Mutable state shared by the drivers of one run."""

    phase: str = "setup"
    level: int = 0  # closed model: wanted virtual users
    think_time: float = 0.0
    stopping: bool = False
    phase_stats: dict[str, PhaseStats] = field(default_factory=dict)

    def stats(self, phase: str | None = None) -> PhaseStats:
        """Stats of a phase (the current one by default)."""
        name = self.phase if phase is None else phase
        s = self.phase_stats.get(name)
        if s is None:
            s = self.phase_stats[name] = PhaseStats()
        return s


class HttpDriver:
    """Sends requests of a mix for a pool of users and records each one."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        mix: RequestMix,
        auth: AuthClient,
        pick_user: Callable[[], User],
        recorder: HttpRecorder,
        counters: LiveCounters,
        clock: Clock,
        rng: random.Random,
        *,
        max_in_flight: int = 1000,
        recent_tasks: int = 100,
        state: DriverState | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.mix = mix
        self.auth = auth
        self.pick_user = pick_user
        self.recorder = recorder
        self.counters = counters
        self.clock = clock
        self.rng = rng
        self.max_in_flight = max_in_flight
        self.state = state if state is not None else DriverState()
        self.recent_tasks: collections.deque[str] = collections.deque(maxlen=recent_tasks)
        self.task_listeners: list[TaskListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: collections.deque[tuple[int, str]] = collections.deque()
        self._open_active = 0

    # --- one request ---------------------------------------------------------------------------

    async def send(
        self, ep: Endpoint, user: User, t_intended: int, retry: bool = True, phase: str | None = None
    ) -> None:
        """Send one request and record it; a 401 triggers one re-authentication and a retry."""
        clock, counters = self.clock, self.counters
        token: str | None = None
        if ep.auth:
            token = user.fresh_token()
            if token is None:
                try:
                    token = await self.auth.token(user)
                except AuthFailed:
                    now = clock.now()
                    self._record(t_intended, now, now, 0, "auth", 0, 0, ep, user, None, phase)
                    return
        body = ep.body(user.email, token, self.rng)
        headers = dict(ep.headers)
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        status = nin = 0
        err: str | None = None
        raw = b""
        counters.in_flight += 1
        t0 = clock.now()
        try:
            async with self.session.request(
                ep.method, self.base_url + ep.path, data=body, headers=headers
            ) as resp:
                raw = await resp.read()
                status = resp.status
            nin = len(raw)
        except asyncio.CancelledError:
            counters.in_flight -= 1
            self._record(t_intended, t0, clock.now(), 0, "cancelled", 0, len(body or b""), ep, user,
                         None, phase)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row
            err = classify(exc)
        counters.in_flight -= 1
        t1 = clock.now()
        task_id = None
        if err is None:
            err = status_error(status)
            if err is None and ep.creates_task:
                task_id = _task_id(raw)
                if task_id is None:
                    err = "bad_body"
        self._record(t_intended, t0, t1, status, err, nin, len(body or b""), ep, user, task_id, phase)
        if task_id is not None:
            counters.tasks_created += 1
            self.recent_tasks.append(task_id)
            for listener in self.task_listeners:
                listener(task_id, ep.task_type, user, t1)
        elif status == 401 and ep.auth and retry and not self.state.stopping:
            counters.reauths += 1
            await self.auth.reauth(user, token)
            await self.send(ep, user, clock.now(), retry=False, phase=phase)

    def _record(
        self, ti: int, ts: int, te: int, status: int, err: str | None, nin: int, nout: int,
        ep: Endpoint, user: User, task_id: str | None, phase: str | None = None,
    ) -> None:
        self.recorder.record(ti, ts, te, status, err, nin, nout, ep.name, ep.method, user.email,
                             self.state.phase if phase is None else phase, task_id)
        self.counters.requests += 1
        if err is not None:
            self.counters.error(err)

    # --- closed model --------------------------------------------------------------------------

    async def _virtual_user(self, index: int) -> None:
        state, clock, pick, mix, rng = self.state, self.clock, self.pick_user, self.mix, self.rng
        intended = clock.now()
        while index < state.level and not state.stopping:
            await self.send(mix.pick(rng), pick(), intended)
            think = state.think_time
            if think > 0:
                intended = clock.now() + int(think * 1e9)
                await asyncio.sleep(think)
            else:
                intended = clock.now()

    def set_level(self, level: int, vus: dict[int, asyncio.Task[None]]) -> None:
        """Closed model: run ``level`` virtual users (extra ones stop after their request)."""
        self.state.level = level
        for i in range(level):
            t = vus.get(i)
            if t is None or t.done():
                vus[i] = self._spawn(self._virtual_user(i))

    # --- open model ----------------------------------------------------------------------------

    async def open_schedule(
        self, arrivals: Iterator[float], end_s: float, phases: list[tuple[float, str]]
    ) -> None:
        """Start one request per intended arrival time until ``end_s``; never thins the schedule.

        ``phases`` lists (end time, name) in order: a request belongs to the phase of its intended
        start time, whatever the clock says when it actually starts.
        """
        clock, state, counters = self.clock, self.state, self.counters
        bounds = iter(phases)
        phase_end, phase = next(bounds)
        nxt = next(arrivals, None)
        while nxt is not None and nxt < end_s and not state.stopping:
            delay = nxt - clock.seconds()
            if delay > 0:
                await asyncio.sleep(max(delay, MIN_SLEEP_S))
            now = clock.seconds()
            while nxt is not None and nxt <= now and nxt < end_s:
                while nxt >= phase_end:
                    phase_end, phase = next(bounds, (float("inf"), phase))
                stats = state.stats(phase)
                stats.planned += 1
                ti = int(nxt * 1e9)
                if self._open_active < self.max_in_flight:
                    self._open_active += 1
                    self._spawn(self._open_request(ti, phase))
                else:
                    stats.cap_hits += 1
                    counters.cap_hits += 1
                    self._pending.append((ti, phase))
                nxt = next(arrivals, None)

    async def _open_request(self, ti: int, phase: str) -> None:
        try:
            await self._open_chain(ti, phase)
        finally:
            self._open_active -= 1

    async def _open_chain(self, ti: int, phase: str) -> None:
        clock, state, counters = self.clock, self.state, self.counters
        while True:
            late = clock.now() - ti > LATE_AFTER_NS
            stats = state.stats(phase)
            if late:
                stats.late += 1
                counters.late += 1
            else:
                stats.on_time += 1
            await self.send(self.mix.pick(self.rng), self.pick_user(), ti, phase=phase)
            # Queued arrivals keep starting (late) after the schedule ends, until drain's timeout.
            if not self._pending:
                return
            ti, phase = self._pending.popleft()

    def drop_pending(self) -> None:
        """Record every open-model request that never started as a 'dropped' row."""
        now = self.clock.now()
        while self._pending:
            ti, phase = self._pending.popleft()
            ep, user = self.mix.pick(self.rng), self.pick_user()
            self.state.stats(phase).dropped += 1
            self.counters.dropped += 1
            self._record(ti, now, now, 0, "dropped", 0, 0, ep, user, None, phase)

    # --- bookkeeping ---------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout: float) -> None:
        """Wait for requests in flight to finish; cancel what is left after ``timeout``."""
        self.state.stopping = True
        if self._tasks:
            _, left = await asyncio.wait(set(self._tasks), timeout=timeout)
            for t in left:
                t.cancel()
            if left:
                await asyncio.gather(*left, return_exceptions=True)
        self.drop_pending()


def _task_id(raw: bytes) -> str | None:
    try:
        tid = json.loads(raw).get("taskId")
    except (ValueError, AttributeError):
        return None
    return tid if isinstance(tid, str) and tid else None
