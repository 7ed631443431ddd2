"""HTTP drivers: the closed model (virtual users) and the open model (arrival schedule).

Both follow one schedule object (a ``StressPlan``): ``at(t)`` gives the wanted level at elapsed
time t and ``arrival_times()`` the open model's intended start times. Every request, failed or
not, becomes one row through ``HttpDriver.send``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import aiohttp

from taskforge_perf.engine.auth import AuthClient, AuthFailed
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.failures import check_headers, classify, retry_after_s, status_error
from taskforge_perf.engine.fastclient import (
    FastClient,
    RequestTemplate,
    header_value,
    redirect_location,
)
from taskforge_perf.engine.fastclient import task_id as parse_task_id
from taskforge_perf.engine.http_bytes import REDIRECTS as _REDIRECTS
from taskforge_perf.engine.http_chain import FastChain
from taskforge_perf.engine.http_open import OpenFast
from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters
from taskforge_perf.error_samples import KIND_WORDS, ErrorSamples
from taskforge_perf.mix import Endpoint, RequestMix
from taskforge_perf.users import User

#: An open-model request counts as late when it starts this long after its intended time.
LATE_AFTER_NS = 2_000_000
#: uvloop turns shorter sleeps into busy polling (FACTS.md); wake-ups are batched instead.
MIN_SLEEP_S = 0.001
#: The plan's end is the end: no request starts later than this after it (the slack covers the
#: timer's own granularity; an arrival whose turn comes later is recorded as "dropped").
END_SLACK_NS = LATE_AFTER_NS
_NEVER = 1 << 62

#: A closed-model virtual user whose request could not be built waits this long before its next
#: one, so a broken payload builder records client rows instead of spinning the event loop.
CLIENT_ERROR_PAUSE_S = 0.1
#: A paused virtual user (Retry-After, auth back-off) checks this often whether the run stops.
PAUSE_SLICE_S = 0.25
#: Open model: the latency (s) assumed to size the connections opened before the schedule starts
#: (``ceil(peak rate * latency * PREOPEN_HEADROOM)``, capped by the in-flight cap), as k6 sizes
#: its pre-allocated VUs. Too few shows as ``meta["preopen"]["on_demand"]`` and a warning.
PREOPEN_LATENCY_S = 0.05
PREOPEN_HEADROOM = 1.5

TaskListener = Callable[[str, "str | None", User, int], None]
#: Statuses whose Retry-After header asks the client to wait (RFC 9110 section 10.2.3).
_RETRY_AFTER = frozenset({429, 503})
_UNSET: Any = object()


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
    #: True while requests in flight finish after the plan's end (within the drain grace).
    draining: bool = False
    phase_stats: dict[str, PhaseStats] = field(default_factory=dict)

    def stats(self, phase: str | None = None) -> PhaseStats:
        """Stats of a phase (the current one by default)."""
        name = self.phase if phase is None else phase
        s = self.phase_stats.get(name)
        if s is None:
            s = self.phase_stats[name] = PhaseStats()
        return s


@dataclass(frozen=True)
class GroupLane:
    """One user group as the driver sees it (``taskforge_perf.groups``): its mix, its users and
    its think time (None: the phase's)."""

    name: str
    mix: RequestMix
    pick_user: Callable[[], User]
    think: Callable[[random.Random], float] | None = None


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
        fast: FastClient | None = None,
        honor_retry_after: bool = True,
    ) -> None:
        self.session = session
        #: Closed model: a 429/503 with Retry-After pauses the virtual user that got it.
        self.honor_retry_after = honor_retry_after
        #: 429/503 answers seen, those with a usable Retry-After, and the seconds they asked for.
        self.retry_after = {"answers": 0, "with_header": 0, "asked_s": 0.0}
        #: Closed-model pauses of virtual users (Retry-After, auth back-off, unbuildable requests).
        self.pauses = {"count": 0, "seconds": 0.0}
        #: Endpoint name -> "ExceptionType: message" of the first request that could not be built.
        self.client_errors: dict[str, str] = {}
        #: The first failing requests of each (endpoint, status, error kind), with what the target
        #: said (``taskforge_perf.error_samples``); fed on the error path of ``_outcome`` only.
        self.error_samples = ErrorSamples(recorder.worker)
        # A transport failure's text, set on the error path just before ``_outcome`` reads it.
        self._detail: str | None = None
        self._checked: set[int] = set()  # endpoints whose headers were checked (aiohttp path)
        #: The load traffic's client: the fast client when given, else the aiohttp session.
        self.fast = fast
        self._send = self._send_fast if fast is not None else self._send_aiohttp
        self._templates: dict[int, RequestTemplate | None] = {}
        self._keep: list[Endpoint] = []
        self.base_url = base_url
        self.mix = mix
        self.auth = auth
        self.pick_user = pick_user
        self.recorder = recorder
        self.counters = counters
        self.clock = clock
        self.rng = rng
        self.max_in_flight = max_in_flight
        # Open-model requests on the fast client by callback (engine.http_open), when common.
        self._open_fast = OpenFast(self) if fast is not None else None
        self.state = state if state is not None else DriverState()
        self.recent_tasks: collections.deque[str] = collections.deque(maxlen=recent_tasks)
        self.task_listeners: list[TaskListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Open-model arrivals waiting for the in-flight cap, with the endpoint and user planned
        # for them (so a dropped row names what would have been sent).
        self._pending: collections.deque[tuple[int, str, Endpoint, User]] = collections.deque()
        self._open_active = 0
        #: Clock ns of the plan's end: no request starts after it (+ END_SLACK_NS).
        self.end_ns = _NEVER
        #: Scheduler lateness (ns) of open-model starts since the health probe last took them:
        #: one append per start, read once per monitor interval (engine.health).
        self.lateness: list[int] = []
        # The open model's schedule, shared by its timer and the completions (see _start_due).
        self._nxt: float | None = None
        self._arrivals: Iterator[float] = iter(())
        self._end_s = 0.0
        self._bounds: Iterator[tuple[float, str]] = iter(())
        self._phase_end, self._phase = 0.0, "load"
        #: User groups (empty: one mix for every user); ``picker`` chooses the group of a request.
        self.lanes: tuple[GroupLane, ...] = ()
        self.picker: Any = None
        #: Open model: latency (s) assumed when sizing the pre-opened connections (0: none).
        self.preopen_latency_s = PREOPEN_LATENCY_S
        #: What ``preopen`` did (empty: nothing was pre-opened); ``preopen_meta`` reports it.
        self.preopened: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _pick(self) -> tuple[Endpoint, User]:
        """The endpoint and user of the next open-model request (through its group, if any)."""
        if not self.lanes:
            return self.mix.pick(self.rng), self.pick_user()
        lane = self.lanes[self.picker.pick(self.rng)]
        return lane.mix.pick(self.rng), lane.pick_user()

    # --- one request ---------------------------------------------------------------------------

    async def send(
        self,
        ep: Endpoint,
        user: User,
        t_intended: int,
        retry: bool = True,
        phase: str | None = None,
    ) -> float:
        """Send one request and record it; a 401 triggers one re-authentication and a retry.

        Returns the seconds a closed-model virtual user should wait before its next request
        (a honoured Retry-After, the user's auth back-off, a request that could not be built);
        0.0 normally. The open model ignores it and keeps its schedule.
        """
        return await self._send(ep, user, t_intended, retry, phase)

    async def _renewed_token(
        self, ep: Endpoint, user: User, t_intended: int, phase: str | None
    ) -> str | float:
        """A renewed access token, or the pause (s) after recording the request as "auth"."""
        try:
            return await self.auth.token(user)
        except AuthFailed as exc:
            now = self.clock.now()
            self._record(t_intended, now, now, 0, "auth", 0, 0, ep, user, None, phase)
            return max(exc.retry_in, MIN_SLEEP_S)

    def _client_error(
        self, ep: Endpoint, user: User, t_intended: int, exc: Exception, phase: str | None
    ) -> float:
        """Record a request that could not be built (error "client", status 0; the message once
        per endpoint in ``client_errors``); returns the closed model's pause."""
        if ep.name not in self.client_errors:
            msg = f"{type(exc).__name__}: {exc}"
            for secret in (user.access, user.refresh, user.password):
                if secret:  # a builder's message may quote what it was given: never keep it
                    msg = msg.replace(secret, "***")
            self.client_errors[ep.name] = msg[:500]
        now = self.clock.now()
        self._record(t_intended, now, now, 0, "client", 0, 0, ep, user, None, phase)
        return CLIENT_ERROR_PAUSE_S

    def _check_headers(self, ep: Endpoint) -> None:
        """Raise for headers no client can send (checked once per endpoint): client rows."""
        check_headers(ep.name, ep.headers)
        self._checked.add(id(ep))
        self._keep.append(ep)  # ids stay unique while the endpoint is alive

    def _retry_pause(self, value: str | bytes | None) -> float:
        """Count a 429/503 answer; the seconds its Retry-After asks for (0.0 when not honoured)."""
        ra = self.retry_after
        ra["answers"] += 1
        secs = retry_after_s(value)
        if secs is None:
            return 0.0
        ra["with_header"] += 1
        ra["asked_s"] += secs
        return secs if self.honor_retry_after else 0.0

    async def _send_aiohttp(
        self,
        ep: Endpoint,
        user: User,
        t_intended: int,
        retry: bool = True,
        phase: str | None = None,
    ) -> float:
        """``send`` through the aiohttp session (setup-grade path; everything unusual)."""
        clock, counters = self.clock, self.counters
        token = user.fresh_token() if ep.auth else None
        if ep.auth and token is None:
            got = await self._renewed_token(ep, user, t_intended, phase)
            if not isinstance(got, str):
                return got
            token = got
        try:
            if id(ep) not in self._checked:
                self._check_headers(ep)
            body = ep.body(user.email, token, self.rng)
        except Exception as exc:  # noqa: BLE001 - a request that cannot be built is a row
            return self._client_error(ep, user, t_intended, exc, phase)
        headers = dict(ep.headers)
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        status = 0
        err: str | None = None
        raw = b""
        retry_after: str | None = None
        nout = len(body) if body is not None else 0
        counters.in_flight += 1
        t0 = clock.now()
        try:
            async with self.session.request(
                ep.method, self.base_url + ep.path, data=body, headers=headers
            ) as resp:
                raw = await resp.read()
                status = resp.status
                if status in _RETRY_AFTER:
                    retry_after = resp.headers.get("Retry-After")
        except asyncio.CancelledError:
            counters.in_flight -= 1
            self._record(t_intended, t0, clock.now(), 0, "cancelled", 0, nout, ep, user, None, phase)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row
            err = classify(exc)
            self._detail = _exc_text(exc, err)
        counters.in_flight -= 1
        if (
            self._outcome(ep, user, t_intended, t0, clock.now(), status, err, raw, nout, phase)
            and retry
            and not self.state.stopping
        ):
            counters.reauths += 1
            await self.auth.reauth(user, token)
            return await self._send(ep, user, clock.now(), False, phase)
        if status in _RETRY_AFTER:
            return self._retry_pause(retry_after)
        return 0.0

    async def _send_fast(
        self,
        ep: Endpoint,
        user: User,
        t_intended: int,
        retry: bool = True,
        phase: str | None = None,
    ) -> float:
        """``send`` through the fast client: a pre-built request on a kept-alive connection."""
        tmpl = self._templates.get(id(ep), _UNSET)
        if tmpl is _UNSET:
            try:
                tmpl = self._template(ep)
            except Exception as exc:  # noqa: BLE001 - a request that cannot be built is a row
                return self._client_error(ep, user, t_intended, exc, phase)
        if tmpl is None:
            return await self._send_aiohttp(ep, user, t_intended, retry, phase)
        clock, counters = self.clock, self.counters
        token = user.fresh_token() if ep.auth else None
        if ep.auth and token is None:
            got = await self._renewed_token(ep, user, t_intended, phase)
            if not isinstance(got, str):
                return got
            token = got
        try:
            body = ep.body(user.email, token, self.rng)
            data = tmpl.build(token, body)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - a request that cannot be built is a row
            return self._client_error(ep, user, t_intended, exc, phase)
        nout = len(body) if body is not None else 0
        fast = user.via if user.via is not None else self.fast  # a group's region, or direct
        assert fast is not None
        counters.in_flight += 1
        t0 = clock.now()
        try:
            status, raw, err = await fast.request(data)
            if err is None and 300 <= status < 400 and status in _REDIRECTS:
                status, raw, err = await self._follow_redirect(ep, status, fast.last_head, token, body)
        except asyncio.CancelledError:
            counters.in_flight -= 1
            self._record(t_intended, t0, clock.now(), 0, "cancelled", 0, nout, ep, user, None, phase)
            raise
        t1 = clock.now()
        counters.in_flight -= 1
        if err is not None:
            status, raw = 0, b""
            if self._detail is None:  # else the redirect's own failure (_follow_redirect)
                self._detail = fast.last_error
        if (
            self._outcome(ep, user, t_intended, t0, t1, status, err, raw, nout, phase)
            and retry
            and not self.state.stopping
        ):
            counters.reauths += 1
            await self.auth.reauth(user, token)
            return await self._send(ep, user, clock.now(), False, phase)
        if status in _RETRY_AFTER:
            return self._retry_pause(header_value(fast.last_head, b"retry-after"))
        return 0.0

    def _template(self, ep: Endpoint) -> RequestTemplate | None:
        assert self.fast is not None
        self._check_headers(ep)  # raises for headers no client can send: client rows
        tmpl = self.fast.template(ep.method, ep.path, ep.headers, auth=ep.auth)
        self._templates[id(ep)] = tmpl
        self._keep.append(ep)  # ids stay unique while the endpoint is alive
        return tmpl

    async def _follow_redirect(
        self, ep: Endpoint, status: int, head: bytes, token: str | None, body: bytes | None
    ) -> tuple[int, bytes, str | None]:
        """A redirect on the fast path: follow it through aiohttp (as the aiohttp path would),
        and send this endpoint through aiohttp from now on."""
        self._templates[id(ep)] = None
        loc = redirect_location(status, head)
        if loc is None:
            return status, b"", None  # no readable Location: the 3xx is the answer
        url = urljoin(self.base_url + ep.path, loc)
        method, data = ep.method, body
        if status == 303 or (status in (301, 302) and method == "POST"):
            method, data = "GET", None
        headers = dict(ep.headers)
        if token is not None and _origin(url) == _origin(self.base_url):
            headers["Authorization"] = "Bearer " + token
        try:
            async with self.session.request(method, url, data=data, headers=headers) as resp:
                return resp.status, await resp.read(), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row
            kind = classify(exc)
            self._detail = _exc_text(exc, kind)
            return 0, b"", kind

    def _outcome(
        self,
        ep: Endpoint,
        user: User,
        ti: int,
        t0: int,
        t1: int,
        status: int,
        err: str | None,
        raw: bytes,
        nout: int,
        phase: str | None,
    ) -> bool:
        """Record a finished request (task id, error kind); True when a 401 asks for re-auth."""
        task_id = None
        if err is None:
            err = status_error(status)
            if err is None and ep.creates_task:
                task_id = parse_task_id(raw)
                if task_id is None:
                    err = "bad_body"
        self.recorder.record(
            ti,
            t0,
            t1,
            status,
            err,
            len(raw),
            nout,
            ep.name,
            ep.method,
            user.email,
            self.state.phase if phase is None else phase,
            task_id,
            user.group,
            user.session,
        )
        counters = self.counters
        counters.requests += 1
        if err is not None:
            counters.error(err)
            self.error_samples.add(ep.name, ep.method, status, err, t0, raw, self._detail, user)
            self._detail = None
        if task_id is not None:
            counters.tasks_created += 1
            self.recent_tasks.append(task_id)
            for listener in self.task_listeners:
                listener(task_id, ep.task_type, user, t1)
            return False
        return status == 401 and ep.auth

    def _record(
        self,
        ti: int,
        ts: int,
        te: int,
        status: int,
        err: str | None,
        nin: int,
        nout: int,
        ep: Endpoint,
        user: User,
        task_id: str | None,
        phase: str | None = None,
    ) -> None:
        self.recorder.record(
            ti,
            ts,
            te,
            status,
            err,
            nin,
            nout,
            ep.name,
            ep.method,
            user.email,
            self.state.phase if phase is None else phase,
            task_id,
            user.group,
            user.session,
        )
        self.counters.requests += 1
        if err is not None:
            self.counters.error(err)

    # --- closed model --------------------------------------------------------------------------

    async def _virtual_user(self, index: int) -> None:
        state, clock, pick, mix, rng = self.state, self.clock, self.pick_user, self.mix, self.rng
        lane = self.lanes[self.picker.for_index(index)] if self.lanes else None
        if lane is not None:
            pick, mix = lane.pick_user, lane.mix
        send = self._send
        # On the fast client, requests go through a chain of callbacks (engine.http_chain: no
        # future or task step per request) until one needs this coroutine; not with think times.
        chain = None
        if self.fast is not None and (lane is None or lane.think is None):
            chain = FastChain(self, index, mix, pick)
        intended = clock.now()
        while index < state.level and not state.stopping and intended <= self.end_ns:
            if chain is not None and state.think_time <= 0:
                pause = await chain.run(intended)
            else:
                pause = await send(mix.pick(rng), pick(), intended, True, None)
            think = state.think_time if lane is None or lane.think is None else lane.think(rng)
            if pause > 0:  # Retry-After, auth back-off or a request that could not be built
                wait = max(pause, think)
                self.pauses["count"] += 1
                self.pauses["seconds"] += wait
                intended = clock.now() + int(wait * 1e9)
                await self._pause(wait, index)
            elif think > 0:
                intended = clock.now() + int(think * 1e9)
                await asyncio.sleep(think)
            else:
                intended = clock.now()

    async def _pause(self, seconds: float, index: int) -> None:
        """Wait ``seconds`` in slices, returning early when the run stops or the level drops."""
        state = self.state
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while index < state.level and not state.stopping:
            left = end - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, PAUSE_SLICE_S))

    def set_level(self, level: int, vus: dict[int, asyncio.Task[None]]) -> None:
        """Closed model: run ``level`` virtual users (extra ones stop after their request)."""
        self.state.level = level
        self._loop = asyncio.get_running_loop()
        for i in range(level):
            t = vus.get(i)
            if t is None or t.done():
                vus[i] = self._spawn(self._virtual_user(i))

    # --- open model ----------------------------------------------------------------------------

    async def preopen(self, plan: Any) -> None:
        """Open the open model's connections before the schedule's clock starts (users are
        already logged in by then), sized from the plan's peak rate and ``preopen_latency_s``:
        without them the first second's requests wait for their own connects (50-90 ms late
        at 16k-32k req/s)."""
        rates = [max(ph.rate or 0.0, ph.ramp_from or 0.0) for ph in plan.phases if ph.model == "open"]
        peak = max(rates, default=0.0)
        if self.fast is None or peak <= 0:
            return
        want = min(math.ceil(peak * max(self.preopen_latency_s, 0.0) * PREOPEN_HEADROOM), self.max_in_flight)
        opened = await self.fast.preopen(want)
        self.preopened = {
            "wanted": want,
            "opened": opened,
            "peak_rate": peak,
            "expected_latency_s": self.preopen_latency_s,
            "_base": self.fast.opened_on_demand,
        }

    def preopen_meta(self, meta: dict[str, Any]) -> None:
        """Add ``meta["preopen"]`` (wanted, opened, on_demand: connections requests had to open
        during the schedule) and a warning when connections were opened on demand."""
        if not self.preopened or self.fast is None:
            return
        info = {k: v for k, v in self.preopened.items() if not k.startswith("_")}
        info["on_demand"] = self.fast.opened_on_demand - self.preopened["_base"]
        meta["preopen"] = info
        if info["on_demand"]:
            msg = (
                f"the open model pre-opened {info['opened']} connections (peak {info['peak_rate']:g} "
                f"req/s x {info['expected_latency_s']:g} s expected latency x {PREOPEN_HEADROOM:g}) "
                f"but requests had to open {info['on_demand']} more during the schedule (each one "
                "late by a connect): the target was slower than expected or closed connections"
            )
            meta["warnings"] = [*(meta.get("warnings") or []), msg]
            logging.getLogger("taskforge_perf").warning(msg)

    async def open_schedule(
        self, arrivals: Iterator[float], end_s: float, phases: list[tuple[float, str]]
    ) -> None:
        """Start one request per intended arrival time until ``end_s``; never thins the schedule.

        ``phases`` lists (end time, name) in order: a request belongs to the phase of its intended
        start time, whatever the clock says when it actually starts.
        """
        clock, state = self.clock, self.state
        self._loop = asyncio.get_running_loop()
        self._bounds = iter(phases)
        self._phase_end, self._phase = next(self._bounds)
        self._arrivals, self._end_s = arrivals, end_s
        self._nxt = next(arrivals, None)
        try:
            while self._nxt is not None and self._nxt < end_s and not state.stopping:
                delay = self._nxt - clock.seconds()
                if delay > 0:
                    await asyncio.sleep(max(delay, MIN_SLEEP_S))
                self._start_due(clock.seconds())
        finally:
            self._nxt = None  # the schedule is over: completions stop looking at it

    def _start_due(self, now: float) -> None:
        """Start every arrival due by ``now`` (queued when the in-flight cap is reached).

        Called by the schedule's timer (at least 1 ms apart) and, between timer wake-ups, by
        each open-model request as it completes: at high rates the loop's own activity starts
        arrivals on time without extra wake-ups (and without sub-ms sleeps, which uvloop turns
        into busy polling).
        """
        state, counters, arrivals, end_s = self.state, self.counters, self._arrivals, self._end_s
        nxt = self._nxt
        phase_end, phase = self._phase_end, self._phase
        now_ns = int(now * 1e9)
        while nxt is not None and nxt <= now and nxt < end_s:
            while nxt >= phase_end:
                phase_end, phase = next(self._bounds, (float("inf"), phase))
            stats = state.stats(phase)
            stats.planned += 1
            ti = int(nxt * 1e9)
            if now_ns > self.end_ns + END_SLACK_NS:
                # The loop reached this arrival only after the plan's end: it is never sent.
                self._drop(ti, phase, *self._pick(), now_ns)
            elif self._open_active < self.max_in_flight:
                self._open_active += 1
                self._launch(ti, phase, *self._pick(), False)
            else:
                stats.cap_hits += 1
                counters.cap_hits += 1
                self._pending.append((ti, phase, *self._pick()))
            nxt = next(arrivals, None)
        self._nxt = nxt
        self._phase_end, self._phase = phase_end, phase

    def _launch(self, ti: int, phase: str, ep: Endpoint, user: User, queued: bool) -> None:
        """Start one open-model request in a slot already counted in ``_open_active``: by
        callback when it is common (``OpenFast.start``), else by a task on ``send``."""
        now = self.clock.now()
        if not queued:
            # Started by the schedule itself: its lateness is the generator's own (health);
            # queued ones are late because of the in-flight cap.
            self.lateness.append(now - ti)
        if now - ti > LATE_AFTER_NS:
            self.state.stats(phase).late += 1
            self.counters.late += 1
        else:
            self.state.stats(phase).on_time += 1
        fast = self._open_fast
        if fast is None or not fast.start(ti, phase, ep, user):
            self._spawn(self._open_request(ti, phase, ep, user))

    async def _open_request(self, ti: int, phase: str, ep: Endpoint, user: User) -> None:
        try:
            await self._send(ep, user, ti, True, phase)
        except BaseException:
            self._open_active -= 1
            raise
        self._continue()

    def _continue(self) -> None:
        """An open-model request ended: start the arrivals that came due meanwhile, then hand
        its slot to the next queued arrival, or free it."""
        state = self.state
        nxt = self._nxt
        if nxt is not None and not state.stopping:
            secs = self.clock.seconds()
            if nxt <= secs:
                self._start_due(secs)
        # Queued arrivals keep starting (late) until the plan's end, never after it: those left
        # are dropped by drain().
        if self._pending and not state.stopping:
            now = self.clock.now()
            if now <= self.end_ns + END_SLACK_NS:
                ti, phase, ep, user = self._pending.popleft()
                self._launch(ti, phase, ep, user, True)
                return
        self._open_active -= 1

    def _drop(self, ti: int, phase: str, ep: Endpoint, user: User, now: int) -> None:
        self.state.stats(phase).dropped += 1
        self.counters.dropped += 1
        self._record(ti, now, now, 0, "dropped", 0, 0, ep, user, None, phase)

    def drop_pending(self) -> None:
        """Record every open-model request that never started as a 'dropped' row (with the
        endpoint and user it was planned for)."""
        now = self.clock.now()
        while self._pending:
            ti, phase, ep, user = self._pending.popleft()
            self._drop(ti, phase, ep, user, now)

    # --- bookkeeping ---------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        # The loop taken once by open_schedule / set_level: asyncio.ensure_future looks it up
        # per call, a getpid() system call each time on Python 3.11 (once per open-model request).
        loop = self._loop
        task = loop.create_task(coro) if loop is not None else asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout: float) -> None:
        """Wait for requests in flight to finish; cancel what is left after ``timeout`` (each
        cancelled request becomes a 'cancelled' row); queued arrivals become 'dropped' rows."""
        self.state.stopping = True
        self.state.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        fast = self._open_fast
        try:
            # Until nothing is in flight or the time is up; a request ending may start a task
            # (a redirect to follow), so the set is taken again after each wait.
            while True:
                waiting: set[asyncio.Future[Any]] = set(self._tasks)
                if fast is not None and fast.live:
                    waiting.add(fast.quiet_future())
                left = deadline - loop.time()
                if not waiting or left <= 0:
                    break
                await asyncio.wait(waiting, timeout=left)
            if fast is not None:
                fast.abandon()
            left_tasks = set(self._tasks)
            for t in left_tasks:
                t.cancel()
            if left_tasks:
                await asyncio.gather(*left_tasks, return_exceptions=True)
            self.drop_pending()
        finally:
            self.state.draining = False


def _exc_text(exc: BaseException, kind: str) -> str:
    """A transport failure's text for its error sample: ``Type: message`` (the kind in words
    when the exception has no message, as timeouts do)."""
    return f"{type(exc).__name__}: {str(exc) or KIND_WORDS.get(kind, kind)}"


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port
