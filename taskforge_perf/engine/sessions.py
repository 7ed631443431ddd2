"""The engine side of ``Sessions``: arrivals, the ``Session`` object a journey drives, and rows.

Sessions run on the HTTP driver's machinery: requests go through ``HttpDriver.send`` (so they are
rows like any other, with ``session`` set from the user), auth through ``AuthClient`` (login,
signup and logout are load rows, not set-up), and every task is spawned on the driver so the
plan's end drains and cancels sessions like any request in flight. No step starts after the
plan's end: the journey gets ``SessionOver`` (caught here) at its next step.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from taskforge_perf.config import Target
from taskforge_perf.engine.auth import LOGOUT, AuthClient
from taskforge_perf.engine.http import HttpDriver
from taskforge_perf.engine.recorder import WsRecorder
from taskforge_perf.engine.ws_conn import parse_message
from taskforge_perf.errors import ConfigError
from taskforge_perf.groups import ThinkTime, as_think_time
from taskforge_perf.mix import _METHODS, TASK_TYPES, Endpoint, task_builder
from taskforge_perf.plan import StressPlan
from taskforge_perf.redact import redact_text
from taskforge_perf.sessions import Sessions
from taskforge_perf.users import User

#: A think or watch checks this often whether the run is over.
SLICE_S = 0.25
#: Pause between a watch's socket opening and its subscribe (the real gateway can lose a
#: subscribe sent in the first 0-2 ms, DESIGN.md section 4).
SUBSCRIBE_AFTER_S = 0.02
_DONE = ("completed", "failed")


class SessionOver(Exception):
    """The run is over: the journey stops at its next step (not an error)."""


class Session:
    """What a journey is given: one user for one visit, and its steps.

    Every step is recorded as rows carrying this session's number (``s.id``). Steps after the
    plan's end raise ``SessionOver``, which ends the journey quietly.
    """

    def __init__(self, drv: SessionDriver, user: User, number: int) -> None:
        self._drv = drv
        self.user = user
        #: The session's number: the ``session`` column of its rows.
        self.id = number
        #: A generator seeded per session, for journeys that draw their own choices.
        self.rng = random.Random(drv.rng.random())

    @property
    def email(self) -> str:
        """The session user's email."""
        return self.user.email

    def _check(self) -> None:
        drv = self._drv
        if drv.driver.state.stopping or drv.driver.clock.now() > drv.driver.end_ns:
            raise SessionOver

    async def signup(self) -> bool:
        """Sign the user up (then log in); True when the user holds a token."""
        self._check()
        return await self._drv.auth.signup(self.user)

    async def login(self) -> bool:
        """Log in (signing up first when the user does not exist); True when it worked."""
        self._check()
        return await self._drv.auth.login(self.user, resignup=True)

    async def request(self, endpoint: Endpoint | str) -> None:
        """Send one request: an ``Endpoint``, a name of ``Sessions.mix``, or ``"GET /path"``."""
        self._check()
        drv = self._drv
        ep = drv.endpoint(endpoint)
        await drv.driver.send(ep, self.user, drv.driver.clock.now(), True, None)

    async def create_task(self, task_type: str = "generate-pdf", payload: Any = None) -> str | None:
        """``POST /tasks`` of a type (a default payload when None); the task id, or None."""
        self._check()
        drv = self._drv
        ep = drv.task_endpoint(task_type)
        if payload is not None:
            drv.payloads[self.id] = payload
        try:
            await drv.driver.send(ep, self.user, drv.driver.clock.now(), True, None)
        finally:
            drv.payloads.pop(self.id, None)
        return drv.task_ids.pop(self.id, None)

    async def think(self, seconds: float | ThinkTime | None = None) -> None:
        """Pause like a user would (``Sessions.think_time`` when None); never past the run's end."""
        self._check()
        tt = as_think_time(seconds, "Session.think") if seconds is not None else self._drv.cfg.think_time
        wait = tt.sample(self.rng) if isinstance(tt, ThinkTime) else 0.0
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(left, SLICE_S))
            self._check()

    async def watch(self, task_id: str | None, timeout: float = 30.0) -> str:
        """Follow a task over a WebSocket until completed/failed: the final status, "timeout",
        or "error" (rows: connect, subscribe, each message, close)."""
        self._check()
        if task_id is None:
            return "error"
        return await self._drv.watch(self, task_id, timeout)

    async def logout(self) -> None:
        """Log out (a 401, as the real system answers, is a row and not an error of the journey)."""
        self._check()
        user = self.user
        if user.access is None:
            return
        await self._drv.auth._post(LOGOUT, "/auth/logout", user, None, token=user.access)
        user.clear_tokens()

    def __repr__(self) -> str:
        return f"Session(id={self.id}, email={self.user.email!r})"


class SessionDriver:
    """Starts sessions at the planned rate during the plan and keeps their figures."""

    def __init__(
        self,
        cfg: Sessions,
        plan: StressPlan,
        driver: HttpDriver,
        auth: AuthClient,
        ws_recorder: WsRecorder,
        target: Target,
        rng: random.Random,
    ) -> None:
        self.cfg, self.plan, self.driver, self.auth = cfg, plan, driver, auth
        self.ws_recorder, self.target = ws_recorder, target
        self.rng = random.Random(cfg.seed if cfg.seed is not None else rng.random())
        self.payloads: dict[int, Any] = {}  # session -> payload of its create_task in flight
        self.task_ids: dict[int, str] = {}  # session -> id of the task it just created
        self._endpoints: dict[str, Endpoint] = {}
        self.planned = self.started = self.completed = self.failed = self.over = 0
        self.refused = self.active = self.peak_active = 0
        self.errors: dict[str, int] = {}
        self.first_error: str | None = None
        #: Plan seconds of each session's planned arrival (for checks of the arrival process).
        self.arrivals: list[float] = []
        self._conn = 0
        self.t0_ns = 0
        driver.task_listeners.append(self._on_task)

    def _on_task(self, task_id: str, task_type: str | None, user: User, t: int) -> None:
        if user.session is not None:
            self.task_ids[user.session] = task_id

    # --- endpoints -----------------------------------------------------------------------------

    def endpoint(self, spec: Endpoint | str) -> Endpoint:
        """An Endpoint for ``Session.request`` (cached: one per name)."""
        if isinstance(spec, Endpoint):
            return spec
        ep = self._endpoints.get(spec)
        if ep is not None:
            return ep
        mix = self.cfg.mix
        found = [e for e in mix.endpoints if e.name == spec] if mix is not None else []
        if found:
            ep = found[0]
        else:
            method, _, path = str(spec).partition(" ")
            if method.upper() not in _METHODS or not path.startswith("/"):
                raise ConfigError(
                    f"Session.request({spec!r}): give an Endpoint, a name of Sessions.mix, or "
                    "'METHOD /path' such as 'GET /health'"
                )
            ep = Endpoint(spec, method, path, auth=True)
        self._endpoints[spec] = ep
        return ep

    def task_endpoint(self, task_type: str) -> Endpoint:
        """``POST /tasks <type>`` whose body is the session's payload, or the default one."""
        key = "\0task " + task_type
        ep = self._endpoints.get(key)
        if ep is not None:
            return ep
        if task_type not in TASK_TYPES:
            raise ConfigError(f"Session.create_task: type must be one of {', '.join(TASK_TYPES)}")
        default = task_builder(task_type)
        payloads, by_email = self.payloads, self._session_of

        def build(email: str, token: str | None, rng: random.Random) -> Any:
            p = payloads.get(by_email(email), None)
            return {"type": task_type, "payload": p} if p is not None else default(email, token, rng)

        ep = Endpoint(
            f"POST /tasks {task_type}",
            "POST",
            "/tasks",
            build=build,
            creates_task=True,
            task_type=task_type,
            headers={"Content-Type": "application/json"},
        )
        self._endpoints[key] = ep
        return ep

    def _session_of(self, email: str) -> int:
        # emails are {prefix}{n}@{domain}
        return int(email.partition("@")[0][len(self.cfg.email_prefix) :])

    # --- arrivals ------------------------------------------------------------------------------

    def start(self, load_start_ns: int) -> None:
        """Start the arrivals (the plan's t = 0 is ``load_start_ns``)."""
        self.t0_ns = load_start_ns
        self.driver._spawn(self._arrive())

    async def _arrive(self) -> None:
        cfg, plan, drv, rng = self.cfg, self.plan, self.driver, self.rng
        clock, state = drv.clock, drv.state
        t, n = 0.0, 0
        while not state.stopping:
            lvl = plan.at(t)
            if lvl is None:
                return
            rate, left = cfg.rate_for(lvl.phase.name), lvl.remaining_in_phase
            gap = (rng.expovariate(rate) if cfg.poisson else 1.0 / rate) if rate > 0 else float("inf")
            if gap >= left:  # none in the rest of this phase (memoryless: draw again in the next)
                t += left + 1e-9
                continue
            t += gap
            wait = (self.t0_ns + int(t * 1e9) - clock.now()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
            if state.stopping or t >= plan.duration:
                return
            self.planned += 1
            self.arrivals.append(t)
            if self.active >= cfg.max_active:
                self.refused += 1
                continue
            n += 1
            drv._spawn(self._session(n))

    async def _session(self, n: int) -> None:
        cfg = self.cfg
        user = User(f"{cfg.email_prefix}{n}@{cfg.domain}", cfg.password, n)
        user.group, user.session = cfg.name, n
        self.started += 1
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            await cfg.journey(Session(self, user, n))
            self.completed += 1
        except SessionOver:
            self.over += 1
        except asyncio.CancelledError:
            self.over += 1
            raise
        except Exception as exc:  # noqa: BLE001 - a broken journey is counted, never fatal
            self.failed += 1
            kind = type(exc).__name__
            self.errors[kind] = self.errors.get(kind, 0) + 1
            if self.first_error is None:
                msg = f"{kind}: {exc}".replace(cfg.password, "***")
                for secret in (user.access, user.refresh):
                    if secret:
                        msg = msg.replace(secret, "***")
                self.first_error = redact_text(msg)[:500]
        finally:
            self.active -= 1

    # --- watch ---------------------------------------------------------------------------------

    async def watch(self, s: Session, task_id: str, timeout: float) -> str:
        """One WebSocket for one task: connect, subscribe, read until done (rows for each)."""
        ws_url = self.target.ws_url
        if ws_url is None:
            raise ConfigError("Session.watch needs Target.ws_url (the status gateway's URL)")
        drv, rec, user = self.driver, self.ws_recorder, s.user
        clock = drv.clock
        token = await self.auth.token(user)
        self._conn += 1
        conn = self._conn

        def row(kind: str, **kw: Any) -> None:
            rec.record(clock.now(), kind, conn, user.email, phase=drv.state.phase, session=s.id, **kw)

        t0 = clock.now()
        try:
            ws = await connect(
                f"{ws_url}/?token={quote(token, safe='')}",
                open_timeout=self.target.ws_connect_timeout,
                ping_interval=None,
                compression=None,
                proxy=None,
            )
        except asyncio.CancelledError:
            row("connect_error", error="cancelled")
            raise
        except Exception:  # noqa: BLE001 - every failure is a row
            row("connect_error", error="other")
            return "error"
        row("connect", handshake_ns=clock.now() - t0)
        result, code = "timeout", None
        try:
            await asyncio.sleep(SUBSCRIBE_AFTER_S)
            await ws.send(json.dumps({"type": "subscribe", "taskId": task_id}))
            sub_ns = clock.now()
            row("subscribe", task_id=task_id, status="own")
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            while (left := end - loop.time()) > 0:
                s._check()
                try:
                    raw = await asyncio.wait_for(ws.recv(), min(left, SLICE_S))
                except TimeoutError:
                    continue
                kind, tid, status, progress, err = parse_message(raw)
                row(
                    kind,
                    task_id=tid,
                    status=status,
                    progress=progress,
                    since_subscribe_ns=clock.now() - sub_ns,
                    error=err,
                )
                if tid == task_id and status in _DONE:
                    result = str(status)
                    break
        except ConnectionClosed as exc:
            result, code = "error", exc.rcvd.code if exc.rcvd is not None else 1006
        finally:
            await ws.close()
            row("close", code=code if code is not None else 1000)
        return result

    def summary(self) -> dict[str, Any]:
        """Figures of the run's sessions (``meta["sessions"]``)."""
        return {
            **self.cfg.to_dict(),
            "planned": self.planned,
            "started": self.started,
            "completed": self.completed,
            "failed": self.failed,
            "ended_by_run": self.over,
            "refused": self.refused,
            "peak_active": self.peak_active,
            "errors": dict(self.errors),
            "first_error": self.first_error,
        }
