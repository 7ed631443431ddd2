"""LoadTester: set up users, follow a plan with the drivers, clean up, hand back a Run."""

from __future__ import annotations

import asyncio
import platform
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from taskforge_perf import __version__
from taskforge_perf.config import Target, as_target
from taskforge_perf.engine.auth import AuthClient
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.failures import status_error
from taskforge_perf.engine.http import DriverState, HttpDriver
from taskforge_perf.engine.monitor import Listener, Monitor
from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters, WsRecorder
from taskforge_perf.errors import ConfigError, RunError, TargetError
from taskforge_perf.mix import RequestMix
from taskforge_perf.plan import StressPlan
from taskforge_perf.results import Run, make_run_id
from taskforge_perf.users import Strategy, UserPool, random_assignment

#: Called with (done, total) while users sign up.
Progress = Callable[[int, int], None]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop: uvloop's when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where the platform has it
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoadTester:
    """Drives authenticated users against a target and records every request.

    >>> tester = LoadTester(target, UserPool(count=20), RequestMix.taskforge())  # doctest: +SKIP
    >>> run = await tester.run(duration=10, concurrency=50)                       # doctest: +SKIP
    >>> run.summary()                                                             # doctest: +SKIP
    """

    def __init__(
        self,
        target: Any,
        users: UserPool | None = None,
        mix: RequestMix | None = None,
        *,
        max_in_flight: int = 1000,
        connections: int | None = None,
        seed: int | None = None,
        recent_tasks: int = 100,
        assignment: Strategy = random_assignment,
        spill_dir: str | Path | None = None,
        setup_progress: Progress | None = None,
        listeners: Sequence[Listener] = (),
        monitor_interval: float = 0.5,
    ) -> None:
        self.target: Target = as_target(target)
        self.users = users if users is not None else UserPool()
        if not isinstance(self.users, UserPool):
            raise ConfigError(f"users must be a UserPool (got {type(self.users).__name__})")
        self.mix = mix if mix is not None else RequestMix.taskforge()
        if not isinstance(self.mix, RequestMix):
            raise ConfigError(f"mix must be a RequestMix (got {type(self.mix).__name__})")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be an integer >= 1 (got {max_in_flight!r})")
        if connections is not None and (not isinstance(connections, int) or connections < 1):
            raise ConfigError(f"connections must be an integer >= 1 or None (got {connections!r})")
        self.max_in_flight = max_in_flight
        self.connections = connections
        self.seed = seed
        self.recent_tasks = recent_tasks
        self.assignment = assignment
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.setup_progress = setup_progress
        self.listeners: list[Listener] = list(listeners)
        self.monitor_interval = monitor_interval
        self.counters = LiveCounters()
        self.last_run: Run | None = None
        self._running = False
        self._driver: HttpDriver | None = None

    def __repr__(self) -> str:
        return f"LoadTester(target={self.target.base_url!r}, users={len(self.users)}, mix={self.mix!r})"

    # --- public entry points -------------------------------------------------------------------

    async def run(
        self,
        plan: StressPlan | None = None,
        *,
        duration: float | None = None,
        concurrency: int | None = None,
        rate: float | None = None,
        think_time: float = 0.0,
        name: str = "run",
    ) -> Run:
        """Run a plan (or one phase given by duration + concurrency | rate); returns the Run.

        Cancelling the call stops the run cleanly: sockets closed, users logged out, and the
        partial Run kept in ``tester.last_run`` before the cancellation propagates.
        """
        plan = _resolve_plan(plan, duration, concurrency, rate, think_time)
        if self._running:
            raise RunError("this LoadTester is already running; wait for it or create another one")
        self._running = True
        try:
            return await self._run(plan, name)
        finally:
            self._running = False

    def run_sync(self, plan: StressPlan | None = None, **kwargs: Any) -> Run:
        """Blocking ``run`` for scripts and notebook cells that do not await.

        The load runs on its own event loop in a dedicated thread (so it works inside Jupyter's
        running loop without nest_asyncio). Ctrl-C / a kernel interrupt cancels the run and the
        partial Run is returned.
        """
        loop = new_event_loop()
        box: dict[str, Any] = {}
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                box["task"] = loop.create_task(self.run(plan, **kwargs))
                ready.set()
                box["run"] = loop.run_until_complete(box["task"])
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                box["exc"] = exc
            finally:
                ready.set()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=main, name="taskforge-perf-run", daemon=True)
        thread.start()
        while thread.is_alive():
            try:
                thread.join(0.1)
            except KeyboardInterrupt:
                ready.wait()
                task = box.get("task")
                if task is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(task.cancel)
                print("taskforge-perf: interrupted, stopping the run and keeping its events...",
                      file=sys.stderr)
        if "run" in box:
            return box["run"]
        exc = box.get("exc")
        if isinstance(exc, asyncio.CancelledError) and self.last_run is not None:
            return self.last_run
        assert exc is not None
        raise exc

    # --- the run -------------------------------------------------------------------------------

    async def _run(self, plan: StressPlan, name: str) -> Run:
        clock = Clock()
        counters = self.counters = LiveCounters()
        worker = 0
        recorder = HttpRecorder(worker=worker, spill_dir=self._spill("events"))
        ws_recorder = WsRecorder(worker=worker, spill_dir=self._spill("ws_events"))
        rng = random.Random(self.seed)
        max_conc = max((p.concurrency or 0) for p in plan.phases)
        limit = self.connections or (max_conc + (self.max_in_flight if plan.model != "closed" else 0)) or 100
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(
            total=self.target.request_timeout, sock_connect=self.target.connect_timeout
        )
        stopped = "completed"
        cancelled = False
        setup_s = 0.0
        load_start_ns = load_end_ns = 0
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, raise_for_status=False, skip_auto_headers=("User-Agent",)
        ) as session:
            state = DriverState()
            auth = AuthClient(session, self.target.base_url, self.users, recorder, counters, clock,
                              lambda: state.phase)
            driver = HttpDriver(
                session, self.target.base_url, self.mix, auth, lambda: self.users[0],
                recorder, counters, clock, rng,
                max_in_flight=self.max_in_flight, recent_tasks=self.recent_tasks, state=state,
            )
            self._driver = driver
            starts: list[float] = []

            def remaining(elapsed: float) -> float:
                lvl = plan.at(min(max(elapsed, 0.0), plan.duration - 1e-9))
                return lvl.remaining_in_phase if lvl is not None else 0.0

            monitor = Monitor(
                list(self.listeners), clock, counters, recorder, state,
                interval=self.monitor_interval, planned_s=plan.duration,
                load_start=lambda: starts[0] if starts else None, phase_remaining=remaining,
            )
            monitor_task = asyncio.ensure_future(monitor.run()) if self.listeners else None
            try:
                state.phase = "setup"
                await self._check_reachable(session, recorder, clock)
                ready = await auth.setup(self.setup_progress)
                if ready == 0:
                    raise TargetError(
                        f"no user could sign up or log in at {self.target.base_url} "
                        f"({len(self.users)} tried; errors: {counters.errors}); check the target's "
                        "auth endpoints and the UserPool's email/password"
                    )
                setup_s = clock.seconds()
                logged_in = [u for u in self.users if u.access is not None]
                driver.pick_user = self.assignment(logged_in, rng)
                load_start_ns = clock.now()
                starts.append(load_start_ns / 1e9)
                await self._follow(plan, driver, clock, load_start_ns)
                await driver.drain(self.target.request_timeout)
                load_end_ns = clock.now()
            except asyncio.CancelledError:
                cancelled, stopped = True, "cancelled"
                load_end_ns = load_end_ns or clock.now()
                await asyncio.shield(driver.drain(0.5))
            finally:
                state.phase = "teardown"
                state.stopping = True
                if monitor_task is not None:
                    monitor_task.cancel()
                    await asyncio.gather(monitor_task, return_exceptions=True)
                    final = monitor.snapshot()
                    for listener in monitor.listeners:
                        try:
                            listener(final)
                        except Exception:  # noqa: BLE001 - displays never break a run
                            pass
                try:
                    await asyncio.shield(asyncio.wait_for(auth.logout_all(), self.target.request_timeout))
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
        meta = self._meta(plan, name, clock, counters, driver, auth, stopped,
                          load_start_ns, load_end_ns, setup_s)
        run = Run(recorder.frame(), ws_recorder.frame(), meta)
        self.last_run = run
        if cancelled:
            raise asyncio.CancelledError
        return run

    async def _follow(self, plan: StressPlan, driver: HttpDriver, clock: Clock, t0_ns: int) -> None:
        """Walk the plan's phases back to back, setting levels at each boundary (and on ramps)."""
        state = driver.state
        vus: dict[int, asyncio.Task[None]] = {}
        # The plan's t = 0 is the load start, not the run start (setup came first).
        offset = t0_ns / 1e9
        open_task = None
        if plan.model != "closed":
            arrivals = (t + offset for t in plan.arrival_times())
            open_task = asyncio.ensure_future(driver.open_schedule(arrivals, offset + plan.duration))
        try:
            while not state.stopping:
                t = clock.seconds() - offset
                lvl = plan.at(max(t, 0.0))
                if lvl is None:
                    break
                state.phase = lvl.phase.name
                state.think_time = lvl.phase.think_time
                driver.set_level(lvl.concurrency or 0, vus)
                wait = lvl.remaining_in_phase
                if lvl.phase.ramp and lvl.model == "closed":
                    wait = min(wait, 0.1)
                await asyncio.sleep(max(wait, 0.001))
        finally:
            state.level = 0
            if open_task is not None:
                if not open_task.done():
                    open_task.cancel()
                await asyncio.gather(open_task, return_exceptions=True)

    async def _check_reachable(
        self, session: aiohttp.ClientSession, recorder: HttpRecorder, clock: Clock
    ) -> None:
        """GET /health once (recorded in phase setup); a transport failure is a TargetError."""
        url = self.target.base_url + "/health"
        t0 = clock.now()
        try:
            async with session.get(url) as resp:
                raw = await resp.read()
            recorder.record(t0, t0, clock.now(), resp.status, status_error(resp.status), len(raw), 0,
                            "GET /health", "GET", "-", "setup", None)
            self.counters.requests += 1
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise TargetError(
                f"cannot reach the target at {self.target.base_url} ({type(exc).__name__}: {exc}); "
                "is it running, and are Target.base_url's host and port right?"
            ) from None

    def _spill(self, what: str) -> Path | None:
        return self.spill_dir / what if self.spill_dir is not None else None

    def _meta(
        self, plan: StressPlan, name: str, clock: Clock, counters: LiveCounters, driver: HttpDriver,
        auth: AuthClient, stopped: str, load_start_ns: int, load_end_ns: int, setup_s: float,
    ) -> dict[str, Any]:
        import aiohttp as _aiohttp
        import polars as _pl

        return {
            "run_id": make_run_id(name, clock.wall_start_ns),
            "name": name,
            "wall_start_ns": clock.wall_start_ns,
            "wall_end_ns": time.time_ns(),
            "load_start_ns": load_start_ns,
            "load_end_ns": load_end_ns,
            "duration_s": (load_end_ns - load_start_ns) / 1e9,
            "setup_s": setup_s,
            "stopped": stopped,
            "plan": plan.to_dict(),
            "mix": self.mix.to_dict(),
            "target": self.target.to_dict(),
            "target_version": self.target.version,
            "users": self.users.to_dict(),
            "seed": self.seed,
            "max_in_flight": self.max_in_flight,
            "counters": counters.snapshot(),
            "phases": {k: v.as_dict() for k, v in driver.state.phase_stats.items()},
            "auth": {"logout_failures": auth.logout_failures, "signup_existing": auth.signup_existing},
            "workers": 1,
            "versions": {
                "taskforge_perf": __version__,
                "python": platform.python_version(),
                "aiohttp": _aiohttp.__version__,
                "polars": _pl.__version__,
            },
        }


def _resolve_plan(
    plan: StressPlan | None, duration: float | None, concurrency: int | None, rate: float | None,
    think_time: float,
) -> StressPlan:
    from taskforge_perf.plan import Phase

    if plan is not None:
        if not isinstance(plan, StressPlan):
            raise ConfigError(f"plan must be a StressPlan (got {type(plan).__name__})")
        if duration is not None or concurrency is not None or rate is not None:
            raise ConfigError("give either plan= or duration= with concurrency=/rate=, not both")
        return plan
    if duration is None:
        raise ConfigError("run() needs a plan, or duration= (seconds) with concurrency= or rate=")
    if concurrency is None and rate is None:
        raise ConfigError("run() needs concurrency= (closed model) or rate= (open model, requests/s)")
    return StressPlan([Phase("load", duration, rate=rate, concurrency=concurrency, think_time=think_time)])
