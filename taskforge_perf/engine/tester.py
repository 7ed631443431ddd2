"""LoadTester: set up users, follow a plan with the drivers, clean up, hand back a Run."""

from __future__ import annotations

import asyncio
import gc
import platform
import random
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl

from taskforge_perf import __version__
from taskforge_perf.config import Target, as_target
from taskforge_perf.engine.auth import AuthClient
from taskforge_perf.engine.checks import check_options
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.failures import status_error
from taskforge_perf.engine.fastclient import FastClient
from taskforge_perf.engine.health import HealthProbe
from taskforge_perf.engine.http import DriverState, HttpDriver
from taskforge_perf.engine.lanes import GroupSetup
from taskforge_perf.engine.monitor import Listener, Monitor
from taskforge_perf.engine.prom import check_port
from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters, WsRecorder, autoflush
from taskforge_perf.engine.run_warnings import add_fault_meta
from taskforge_perf.engine.sessions import SessionDriver
from taskforge_perf.engine.sidecars import Sidecars
from taskforge_perf.engine.sync import run_blocking
from taskforge_perf.engine.ws import WsDriver, WsOptions
from taskforge_perf.environment import run_environment
from taskforge_perf.errors import ConfigError, RunError, TargetError
from taskforge_perf.groups import UserGroup, check_groups, combined_pool
from taskforge_perf.mix import RequestMix
from taskforge_perf.plan import StressPlan
from taskforge_perf.redact import log_redaction, redact_text
from taskforge_perf.results import DEFAULT_STORE, Run, default_store, make_run_id
from taskforge_perf.schema import HTTP_SCHEMA, WS_SCHEMA
from taskforge_perf.sessions import Sessions
from taskforge_perf.store import RunFolder, write_part
from taskforge_perf.threshold_eval import ThresholdWatch
from taskforge_perf.threshold_eval import _coerce as _coerce_thresholds
from taskforge_perf.thresholds import Threshold
from taskforge_perf.users import Strategy, UserPool, random_assignment

#: How often abort-on-fail thresholds are checked during a run.
WATCH_INTERVAL_S = 0.25
#: Called with (done, total) while users sign up.
Progress = Callable[[int, int], None]


class LoadTester:
    """Drives authenticated users against a target and records every request.

    >>> tester = LoadTester(target, UserPool(count=20), RequestMix.taskforge())  # doctest: +SKIP
    >>> run = await tester.run(duration=10, concurrency=50)                       # doctest: +SKIP
    >>> run.summary()                                                             # doctest: +SKIP

    ``http_client="fast"`` (the default) sends the load traffic through ``engine.fastclient``
    (pre-built requests on kept-alive connections, ~5x cheaper per request); ``"aiohttp"`` sends
    everything through the aiohttp session. Auth, setup and redirects always use aiohttp.
    ``ssl_context`` applies to both for https targets: an ``ssl.SSLContext`` (e.g. one that
    trusts a self-signed certificate), ``False`` (no certificate check) or None (the defaults).

    The plan's end is the end: no request starts after it; requests still in flight get
    ``drain_grace`` seconds (default: the target's request timeout) and are then cancelled
    (``cancelled`` rows), and open-model arrivals that never started become ``dropped`` rows.
    A run's load never lasts longer than the plan plus the grace.

    ``honor_retry_after`` (default True): a 429 or 503 answer with a ``Retry-After`` header makes
    the closed-model virtual user that got it wait that long (at most until the run ends); the
    open model records such answers and keeps its schedule. Counts in ``meta["retry_after"]``.

    Every run streams to its own folder as it goes, ``<save_dir>/<run-id>/`` (default
    ``data/runs``, or ``$TASKFORGE_PERF_RUNS``), created when the run starts: ``meta.json`` and
    Parquet part files written every ``recorder.FLUSH_INTERVAL_S`` seconds or ``FLUSH_ROWS`` rows,
    compacted at the end. ``run(save_to=...)`` picks the exact folder. ``save_dir=None`` keeps the
    rows in memory only (small runs and tests; nothing survives a crash).
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
        save_dir: str | Path | None = DEFAULT_STORE,
        setup_progress: Progress | None = None,
        listeners: Sequence[Listener] = (),
        monitor_interval: float = 0.5,
        websockets: int = 0,
        ws_options: WsOptions | None = None,
        live: bool | None = None,
        http_client: str = "fast",
        ssl_context: ssl.SSLContext | bool | None = None,
        drain_grace: float | None = None,
        honor_retry_after: bool = True,
        metrics_port: int | None = None,
        groups: Sequence[UserGroup] | None = None,
    ) -> None:
        self.target: Target = as_target(target)
        #: User groups (``UserGroup``): an alternative to one pool with one mix.
        self.groups: tuple[UserGroup, ...] = () if groups is None else check_groups(groups)
        if self.groups:
            if users is not None or mix is not None:
                raise ConfigError(
                    "give either users= and mix= (one kind of user), or groups=[UserGroup(...), ...] "
                    "(each group has its own users and mix), not both"
                )
            users, mix = combined_pool(self.groups), self.groups[0].mix
        #: ``Sessions`` of the current run (``run(sessions=...)``), None without.
        self._sessions: Sessions | None = None
        if drain_grace is not None and (
            isinstance(drain_grace, bool)
            or not isinstance(drain_grace, int | float)
            or not 0 <= drain_grace < float("inf")
        ):
            raise ConfigError(
                f"drain_grace must be a number of seconds >= 0, or None for the target's request "
                f"timeout (got {drain_grace!r})"
            )
        #: Seconds requests in flight at the plan's end may take before they are cancelled.
        self.drain_grace = float(drain_grace) if drain_grace is not None else None
        if http_client not in ("fast", "aiohttp"):
            raise ConfigError(f"http_client must be 'fast' or 'aiohttp' (got {http_client!r})")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext | bool):
            raise ConfigError(
                "ssl_context must be an ssl.SSLContext, False (no certificate "
                f"check) or None (default checks) (got {type(ssl_context).__name__})"
            )
        #: "fast": load traffic on engine.fastclient; "aiohttp": everything on the aiohttp session.
        self.http_client = http_client
        self.ssl_context = ssl_context
        if not isinstance(honor_retry_after, bool):
            raise ConfigError(f"honor_retry_after must be True or False (got {honor_retry_after!r})")
        #: Closed model: a 429/503 with Retry-After pauses the virtual user that got it.
        self.honor_retry_after = honor_retry_after
        self.users = users if users is not None else UserPool()
        if not isinstance(self.users, UserPool):
            raise ConfigError(f"users must be a UserPool (got {type(self.users).__name__})")
        self.mix = mix if mix is not None else RequestMix.taskforge()
        if not isinstance(self.mix, RequestMix):
            raise ConfigError(f"mix must be a RequestMix (got {type(self.mix).__name__})")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be an integer >= 1 (got {max_in_flight!r})")
        if connections is not None and (
            isinstance(connections, bool) or not isinstance(connections, int) or connections < 1
        ):
            raise ConfigError(f"connections must be an integer >= 1 or None (got {connections!r})")
        check_options(seed, recent_tasks, monitor_interval, assignment, setup_progress, listeners, live)
        self.max_in_flight = max_in_flight
        self.connections = connections
        self.seed = seed
        self.recent_tasks = recent_tasks
        self.assignment = assignment
        if save_dir is not None and not isinstance(save_dir, str | Path):
            raise ConfigError(f"save_dir must be a folder path or None (got {type(save_dir).__name__})")
        self.save_dir = save_dir
        self._folder: RunFolder | None = None  # the open run folder while a run goes
        self._folder_meta: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self.setup_progress = setup_progress
        self.listeners: list[Listener] = list(listeners)
        self.monitor_interval = monitor_interval
        if isinstance(websockets, bool) or not isinstance(websockets, int) or websockets < 0:
            raise ConfigError(f"websockets must be an integer >= 0 connections (got {websockets!r})")
        if ws_options is not None and not isinstance(ws_options, WsOptions):
            raise ConfigError(f"ws_options must be a WsOptions (got {type(ws_options).__name__})")
        self.websockets = websockets
        self.ws_options = ws_options
        # Live dashboard: None = show one when running inside an IPython kernel (notebooks).
        self.live = live
        # Prometheus: live load metrics on 127.0.0.1:metrics_port/metrics while a run goes (0 = a
        # free port); the URL served is in ``metrics_endpoint`` once the run has started.
        self.metrics_port = check_port(metrics_port)
        self.metrics_endpoint: str | None = None
        self.counters = LiveCounters()
        self.last_run: Run | None = None
        self._running = False
        self._driver: HttpDriver | None = None
        self._ws_driver: WsDriver | None = None

    def __repr__(self) -> str:
        return (
            f"LoadTester(target={self.target.display_base_url!r}, users={len(self.users)}, mix={self.mix!r})"
        )

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
        thresholds: Sequence[Threshold | str] | Threshold | str | None = (),
        wait_for_tasks: float = 0.0,
        save_to: str | Path | None = None,
        sessions: Sessions | None = None,
    ) -> Run:
        """Run a plan (or one phase given by duration + concurrency | rate); returns the Run.

        Cancelling the call stops the run cleanly: sockets closed, users logged out, and the
        partial Run kept in ``tester.last_run`` before the cancellation propagates.

        ``thresholds`` (``Threshold`` objects or strings such as ``"p95(POST /tasks) < 300ms"``)
        are evaluated at the end (``run.thresholds()``, ``run.passed``); those marked
        ``abort_on_fail`` are also watched during the run, which stops within a second of a breach.

        ``wait_for_tasks`` (seconds, WebSockets only): after the load, keep the sockets open without
        sending any request until every tracked task got its completed/failed message or this
        time passed, so the task table counts tasks the pipeline finishes late; rows of the wait
        are in phase "teardown", and the load's duration leaves the wait out.

        ``save_to`` is the folder this run streams to (default ``<save_dir>/<run-id>``); it is checked
        before any load (a file, or a folder holding another run, is a ConfigError).
        ``sessions`` (``Sessions``): users that arrive during the run, sign up or log in, follow a
        journey (an async function) and leave, beside the plan's load (use ``rate=0`` for
        sessions alone); each step is a row with its session number (``run.sessions_timeline()``).
        """
        plan = _resolve_plan(plan, duration, concurrency, rate, think_time)
        if sessions is not None and not isinstance(sessions, Sessions):
            raise ConfigError(
                f"sessions must be a Sessions(journey, rate=...) (got {type(sessions).__name__})"
            )
        self._sessions = sessions
        if (
            isinstance(wait_for_tasks, bool)
            or not isinstance(wait_for_tasks, int | float)
            or not 0 <= wait_for_tasks < float("inf")
        ):
            raise ConfigError(
                f"wait_for_tasks must be a number of seconds >= 0 (got {wait_for_tasks!r}); "
                "e.g. 60 to let the task pipeline finish after the load, 0 to stop at once"
            )
        if wait_for_tasks and not self._wants_ws(plan):
            raise ConfigError(
                "wait_for_tasks needs WebSocket connections to see tasks finish; "
                "set websockets= (or a phase's websockets) or wait_for_tasks=0"
            )
        if self._wants_ws(plan) and self.target.ws_url is None:
            raise ConfigError(
                "WebSocket connections were asked for (websockets= or a phase's websockets) but "
                "Target.ws_url is None; give the status gateway's URL, e.g. "
                "Target('http://127.0.0.1:3000', 'ws://127.0.0.1:4000'), or set websockets=0"
            )
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"run(name=...) must be a non-empty string (got {name!r}); e.g. name='baseline'"
            )
        checks = tuple(_coerce_thresholds(thresholds))
        phase_names = {p.name for p in plan.phases} | {"setup", "teardown"}
        for t in checks:
            if t.phase is not None and t.phase not in phase_names:
                raise ConfigError(
                    f"threshold {str(t)!r}: phase {t.phase!r} is not in the plan "
                    f"({', '.join(p.name for p in plan.phases)})"
                )
        if self._running:
            raise RunError("this LoadTester is already running; wait for it or create another one")
        self._running = True
        view = self._live_view(plan, name)
        if view is not None:
            self.listeners.append(view)
        try:
            # The tester's and its libraries' log records lose tokens and passwords while it runs
            # (websockets logs every handshake, ?token=<access JWT> included, at DEBUG).
            with log_redaction(secrets=[u.password for u in self.users]):
                run = await self._run(plan, name, checks, float(wait_for_tasks), save_to)
        except BaseException as exc:
            self._close_folder(
                self._stop_reason or "cancelled"
                if isinstance(exc, asyncio.CancelledError)
                else f"failed: {type(exc).__name__}: {exc}"
            )
            if view is not None:
                view.finish(self.last_run, error=exc)
            raise
        finally:
            self._running = False
            if view is not None:
                self.listeners.remove(view)
        if view is not None:
            view.finish(run)
        return run

    def _live_view(self, plan: StressPlan, name: str) -> Any:
        """The notebook dashboard (a listener) when ``live`` allows it, else None; never raises."""
        if self.live is False:
            return None
        # The display layer is imported lazily: the engine itself never needs it.
        from taskforge_perf.live import live_view

        return live_view(
            f"{name} on {self.target.display_base_url}",
            plan.duration,
            interval_s=self.monitor_interval,
            force=self.live is True,
            plan=plan,  # the dashboard draws the asked rate against the achieved one
            websockets=self._wants_ws(plan),  # no WebSocket rows when none were asked for
        )

    def run_sync(self, plan: StressPlan | None = None, **kwargs: Any) -> Run:
        """Blocking ``run`` for scripts and notebook cells that do not await.

        The load runs on its own event loop in a dedicated thread (so it works inside Jupyter's
        running loop without nest_asyncio). Ctrl-C / a kernel interrupt cancels the run and the
        partial Run is returned.
        """
        self._stop_reason = None

        def interrupted() -> None:
            self._stop_reason = "interrupted"

        try:
            return run_blocking(lambda: self.run(plan, **kwargs), on_interrupt=interrupted)
        except asyncio.CancelledError:
            if self.last_run is None:
                raise
            return self.last_run
        except KeyboardInterrupt:  # a second interrupt: the run is left; its folder says so
            self._close_folder("interrupted")
            raise

    def _close_folder(self, stopped: str) -> None:
        """Mark a run folder left unfinished (error, second interrupt): rows flushed so far stay."""
        folder, self._folder = self._folder, None
        if folder is not None:
            try:
                folder.write_meta({**self._folder_meta, "stopped": stopped})
            except OSError:
                pass

    def _open_folder(self, plan: StressPlan, name: str, clock: Clock, save_to: Any) -> RunFolder | None:
        """Create the run's folder and its starting meta (before any load), or None (memory only)."""
        if save_to is None and self.save_dir is None:
            return None
        run_id = make_run_id(name, clock.wall_start_ns)
        path = Path(save_to) if save_to is not None else default_store(self.save_dir) / run_id
        self._folder_meta = {
            "run_id": run_id,
            "name": name,
            "wall_start_ns": clock.wall_start_ns,
            "plan": plan.to_dict(),
            "mix": self.mix.to_dict(),
            "target": self.target.to_dict(),
            "users": self.users.to_dict(),
            "seed": self.seed,
            "workers": 1,
            "http_client": self.http_client,
        }
        self._folder = RunFolder.create(path, self._folder_meta, field="save_to" if save_to else "save_dir")
        return self._folder

    # --- the run -------------------------------------------------------------------------------

    async def _run(
        self,
        plan: StressPlan,
        name: str,
        checks: tuple[Threshold, ...] = (),
        wait_for_tasks: float = 0.0,
        save_to: Any = None,
    ) -> Run:
        clock = Clock()
        folder = self._open_folder(plan, name, clock, save_to)
        counters = self.counters = LiveCounters()
        worker = 0
        parts = folder.parts if folder is not None else None
        recorder = HttpRecorder(worker=worker, spill_dir=parts)
        ws_recorder = WsRecorder(worker=worker, spill_dir=parts)
        side = Sidecars(
            self.metrics_port,
            self.target.metrics_url,
            clock,
            recorder,
            counters,
            self.monitor_interval,
            timeout=min(self.target.request_timeout, 5.0),  # a hung /metrics never holds the run's end
            ssl=self.ssl_context,
        )
        rng = random.Random(self.seed)
        max_conc = max((p.concurrency or 0) for p in plan.phases)
        limit = self.connections or (max_conc + (self.max_in_flight if plan.model != "closed" else 0)) or 100
        connector = aiohttp.TCPConnector(
            limit=limit,
            limit_per_host=0,
            keepalive_timeout=30,
            ssl=True if self.ssl_context is None else self.ssl_context,
        )
        fast = (
            FastClient(
                self.target.base_url,
                timeout=self.target.request_timeout,
                connect_timeout=self.target.connect_timeout,
                ssl_context=self.ssl_context,
            )
            if self.http_client == "fast"
            else None
        )
        timeout = aiohttp.ClientTimeout(
            total=self.target.request_timeout, sock_connect=self.target.connect_timeout
        )
        stopped = "completed"
        gc_keeper: asyncio.Future[None] | None = None
        cancelled = False
        setup_s = 0.0
        ready: int | None = None
        load_start_ns = load_end_ns = 0
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            raise_for_status=False,
            skip_auto_headers=("User-Agent",),
        ) as session:
            # aiohttp silently retries an idempotent request once when a kept-alive connection
            # fails; a load tester must record that failure instead. No public switch exists.
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            state = DriverState()
            auth = AuthClient(
                session,
                self.target.base_url,
                self.users,
                recorder,
                counters,
                clock,
                lambda: state.phase,
            )
            driver = HttpDriver(
                session,
                self.target.base_url,
                self.mix,
                auth,
                lambda: self.users[0],
                recorder,
                counters,
                clock,
                rng,
                max_in_flight=self.max_in_flight,
                recent_tasks=self.recent_tasks,
                state=state,
                fast=fast,
                honor_retry_after=self.honor_retry_after,
            )
            self._driver = driver
            self._ws_driver = None
            group_setup = GroupSetup(self.groups, self.target, self.http_client, self.ssl_context)
            sess: SessionDriver | None = None
            starts: list[float] = []

            def remaining(elapsed: float) -> float:
                lvl = plan.at(min(max(elapsed, 0.0), plan.duration - 1e-9))
                return lvl.remaining_in_phase if lvl is not None else 0.0

            health = HealthProbe(
                clock,
                driver.lateness,
                interval=self.monitor_interval,
                phase=lambda: state.phase,
                in_flight=lambda: counters.in_flight,
            )
            monitor = Monitor(
                list(self.listeners) + side.listeners,
                clock,
                counters,
                recorder,
                state,
                interval=self.monitor_interval,
                planned_s=plan.duration,
                load_start=lambda: starts[0] if starts else None,
                phase_remaining=remaining,
                health=health,
            )
            monitor_task = asyncio.ensure_future(monitor.run()) if monitor.listeners else None
            flusher = (
                asyncio.ensure_future(autoflush((recorder, ws_recorder))) if folder is not None else None
            )
            abort = asyncio.Event()
            breach: list[Threshold] = []
            watched = [t for t in checks if t.abort_on_fail]
            try:
                state.phase = "setup"
                await self._check_reachable(session, recorder, clock)
                self.metrics_endpoint = await side.start()  # Prometheus endpoint, target scrapes
                ready = await auth.setup(self.setup_progress)
                if ready == 0:
                    raise TargetError(
                        f"no user could sign up or log in at {self.target.display_base_url} "
                        f"({len(self.users)} tried; errors: {counters.errors}); check the target's "
                        "auth endpoints and the UserPool's email/password"
                    )
                if ready < self.users.min_ready:
                    raise TargetError(
                        f"only {ready} of {len(self.users)} users could sign up or log in at "
                        f"{self.target.base_url}, below UserPool.min_ready={self.users.min_ready} "
                        f"(errors: {counters.errors}); check the target's auth endpoints and the "
                        "users' passwords, or lower min_ready"
                    )
                setup_s = clock.seconds()
                logged_in = [u for u in self.users if u.access is not None]
                driver.pick_user = self.assignment(logged_in, rng)
                await group_setup.start(driver, logged_in, self.assignment, rng)
                sess = (
                    SessionDriver(self._sessions, plan, driver, auth, ws_recorder, self.target, rng)
                    if self._sessions is not None
                    else None
                )
                if self._wants_ws(plan):
                    self._start_ws(plan, auth, logged_in, ws_recorder, counters, clock, rng, driver)
                # Objects alive now (imports, setup, the recorder's column lists) leave the
                # collector's generations for the load, and so do those that survive a few seconds
                # (sockets, task records): no 10-100 ms collections that walk them again and again.
                gc.freeze()
                gc_keeper = asyncio.ensure_future(_freeze_survivors())
                load_start_ns = clock.now()
                starts.append(load_start_ns / 1e9)
                driver.end_ns = load_start_ns + int(plan.duration * 1e9)
                if sess is not None:
                    sess.start(load_start_ns)
                health.start()
                if folder is not None:
                    folder.write_meta(
                        {**self._folder_meta, "stopped": "running", "load_start_ns": load_start_ns}
                    )
                watch_task = (
                    asyncio.ensure_future(
                        self._watch(
                            watched,
                            plan,
                            recorder,
                            ws_recorder,
                            clock,
                            load_start_ns,
                            abort,
                            breach,
                            health,
                        )
                    )
                    if watched
                    else None
                )
                try:
                    await self._follow(plan, driver, clock, load_start_ns, abort)
                finally:
                    if watch_task is not None:
                        watch_task.cancel()
                        await asyncio.gather(watch_task, return_exceptions=True)
                if breach:
                    stopped = f"aborted: {breach[0]}"

                # The grace runs from the plan's end (the loop may reach this point late).
                grace = self.drain_grace if self.drain_grace is not None else self.target.request_timeout
                await driver.drain(min(driver.end_ns, clock.now()) / 1e9 + grace - clock.seconds())
                load_end_ns = clock.now()
                if wait_for_tasks and self._ws_driver is not None and not breach:
                    state.phase = "teardown"  # no request is sent; the sockets stay open
                    await self._ws_driver.wait_for_tasks(wait_for_tasks)
            except asyncio.CancelledError:
                cancelled, stopped = True, self._stop_reason or "cancelled"
                load_end_ns = load_end_ns or clock.now()
                await asyncio.shield(driver.drain(0.5))
            finally:
                await health.stop()
                state.phase = "teardown"
                if flusher is not None:
                    flusher.cancel()
                if gc_keeper is not None:
                    gc_keeper.cancel()
                gc.unfreeze()
                state.stopping = True
                if fast is not None:
                    fast.close()
                await group_setup.close()
                if monitor_task is not None:
                    monitor_task.cancel()
                    await asyncio.gather(monitor_task, return_exceptions=True)
                    final = monitor.snapshot()
                    for listener in monitor.listeners:
                        try:
                            listener(final)
                        except Exception:  # noqa: BLE001 - displays never break a run
                            pass
                if self._ws_driver is not None:  # close frames before logout, also when cancelled
                    try:
                        await asyncio.shield(self._ws_driver.close_all(5.0))
                    except asyncio.CancelledError:
                        pass
                try:
                    await asyncio.shield(asyncio.wait_for(auth.cleanup(), self.target.request_timeout))
                except (TimeoutError, asyncio.CancelledError):
                    pass
                await side.stop()  # after the last request: the target's final scrape
        meta = self._meta(
            plan, name, clock, counters, driver, auth, stopped, load_start_ns, load_end_ns, setup_s
        )
        meta["generator"] = health.summary()
        meta.update(group_setup.meta(sess))
        add_fault_meta(meta, driver, auth, ready)
        health_frame = health.frame()
        target_metrics = side.finish(meta)
        if folder is not None:  # compact the parts; the Run reads the frames back lazily
            recorder.flush()
            ws_recorder.flush()
            write_part(health_frame, folder.path / "health.parquet")
            if target_metrics is not None and target_metrics.height:
                write_part(target_metrics, folder.path / "target_metrics.parquet")
            folder.finish(meta, {"events": HTTP_SCHEMA, "ws_events": WS_SCHEMA})
            self._folder = None
            p = folder.path
            run = Run(
                pl.scan_parquet(p / "events.parquet"),
                pl.scan_parquet(p / "ws_events.parquet"),
                meta,
                health=health_frame,
                target_metrics=target_metrics,
                path=p,
            )
        else:
            run = Run(
                recorder.frame(),
                ws_recorder.frame(),
                meta,
                health=health_frame,
                target_metrics=target_metrics,
            )
        if checks:
            results = run.evaluate(checks)
            meta["thresholds"] = results.to_dicts()
            meta["passed"] = bool(results["passed"].all())
            if folder is not None:
                folder.write_meta(meta)
        self.last_run = run
        if cancelled:
            raise asyncio.CancelledError
        return run

    async def _watch(
        self,
        watched: list[Threshold],
        plan: StressPlan,
        recorder: HttpRecorder,
        ws_recorder: WsRecorder,
        clock: Clock,
        t0_ns: int,
        abort: asyncio.Event,
        breach: list[Threshold],
        health: HealthProbe | None = None,
    ) -> None:
        """Check abort-on-fail thresholds a few times a second; set ``abort`` on a breach.

        Incremental: each check reads only the rows recorded since the last one.
        """
        watch = ThresholdWatch(watched)
        seen = seen_ws = 0
        while not abort.is_set():
            await asyncio.sleep(WATCH_INTERVAL_S)
            events = recorder.since(seen)
            ws_new = ws_recorder.since(seen_ws)
            seen += events.height
            seen_ws += ws_new.height
            watch.add(events.filter(pl.col("t_start") >= t0_ns), ws_new)
            hit = watch.poll(
                elapsed_s=(clock.now() - t0_ns) / 1e9,
                plan=plan,
                generator=health.summary() if watch.needs_generator and health is not None else None,
            )
            if hit is not None:
                breach.append(hit)
                abort.set()

    async def _follow(
        self,
        plan: StressPlan,
        driver: HttpDriver,
        clock: Clock,
        t0_ns: int,
        abort: asyncio.Event | None = None,
    ) -> None:
        """Walk the plan's phases back to back, setting levels at each boundary (and on ramps)."""
        state = driver.state
        vus: dict[int, asyncio.Task[None]] = {}
        # The plan's t = 0 is the load start, not the run start (setup came first).
        offset = t0_ns / 1e9
        open_task = None
        if plan.model != "closed":
            arrivals = (t + offset for t in plan.arrival_times())
            ends = [offset + b for b in plan.boundaries[1:]] + [offset + plan.duration]
            phases = list(zip(ends, (p.name for p in plan.phases), strict=False))
            open_task = asyncio.ensure_future(driver.open_schedule(arrivals, offset + plan.duration, phases))
        try:
            while not state.stopping:
                t = clock.seconds() - offset
                lvl = plan.at(max(t, 0.0))
                if lvl is None:
                    break
                state.phase = lvl.phase.name
                state.think_time = lvl.phase.think_time
                driver.set_level(lvl.concurrency or 0, vus)
                if self._ws_driver is not None:
                    self._ws_driver.set_count(self._ws_count(lvl.websockets))
                wait = lvl.remaining_in_phase
                if lvl.phase.ramp and lvl.model == "closed":
                    wait = min(wait, 0.1)
                if abort is None:
                    await asyncio.sleep(max(wait, 0.001))
                else:
                    try:
                        await asyncio.wait_for(abort.wait(), max(wait, 0.001))
                        state.stopping = True
                    except TimeoutError:
                        pass
        finally:
            state.level = 0
            if open_task is not None:
                if not open_task.done():
                    open_task.cancel()
                await asyncio.gather(open_task, return_exceptions=True)

    def _ws_count(self, phase_ws: int | None) -> int:
        return phase_ws if phase_ws is not None else self.websockets

    def _wants_ws(self, plan: StressPlan) -> bool:
        return self.websockets > 0 or any(p.websockets for p in plan.phases)

    def _start_ws(
        self,
        plan: StressPlan,
        auth: AuthClient,
        logged_in: list[Any],
        ws_recorder: WsRecorder,
        counters: LiveCounters,
        clock: Clock,
        rng: random.Random,
        driver: HttpDriver,
    ) -> None:
        """Start the WebSocket driver (connections open in the background, staggered)."""
        assert self.target.ws_url is not None
        ws = WsDriver(
            self.target.ws_url,
            auth,
            logged_in,
            ws_recorder,
            counters,
            clock,
            random.Random(rng.random()),
            phase=lambda: driver.state.phase,
            recent_tasks=driver.recent_tasks,
            options=self.ws_options or WsOptions(connect_timeout=self.target.ws_connect_timeout),
        )
        self._ws_driver = ws
        driver.task_listeners.append(ws.on_task)
        first = plan.at(0.0)
        ws.start(self._ws_count(first.websockets if first is not None else None))

    async def _check_reachable(
        self, session: aiohttp.ClientSession, recorder: HttpRecorder, clock: Clock
    ) -> None:
        """GET /health once (recorded in phase setup); a transport failure is a TargetError."""
        url = self.target.base_url + "/health"
        t0 = clock.now()
        try:
            async with session.get(url) as resp:
                raw = await resp.read()
            recorder.record(
                t0,
                t0,
                clock.now(),
                resp.status,
                status_error(resp.status),
                len(raw),
                0,
                "GET /health",
                "GET",
                "-",
                "setup",
                None,
            )
            self.counters.requests += 1
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TargetError(
                f"cannot reach the target at {self.target.display_base_url} "
                f"({type(exc).__name__}: {redact_text(str(exc))}); "
                "is it running, and are Target.base_url's host and port right?"
            ) from None

    def _meta(
        self,
        plan: StressPlan,
        name: str,
        clock: Clock,
        counters: LiveCounters,
        driver: HttpDriver,
        auth: AuthClient,
        stopped: str,
        load_start_ns: int,
        load_end_ns: int,
        setup_s: float,
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
            "auth": {
                "logout_failures": auth.logout_failures,
                "cleanup": self.users.cleanup,
                "cleanup_failures": auth.cleanup_failures,
                "signup_existing": auth.signup_existing,
            },
            "workers": 1,
            "http_client": self.http_client,
            "ws": self._ws_driver.summary() if self._ws_driver is not None else None,
            "versions": {
                "taskforge_perf": __version__,
                "python": platform.python_version(),
                "aiohttp": _aiohttp.__version__,
                "polars": _pl.__version__,
            },
            "environment": run_environment(),
        }


#: How often long-lived objects are moved out of the collector's generations during a load.
FREEZE_EVERY_S = 2.0


async def _freeze_survivors() -> None:
    """Freeze what survived the last period, so collections only walk young objects.

    Garbage frozen with them (rare: cycles that outlived two collections) is freed at unfreeze.
    """
    while True:
        await asyncio.sleep(FREEZE_EVERY_S)
        gc.freeze()


def _resolve_plan(
    plan: StressPlan | None,
    duration: float | None,
    concurrency: int | None,
    rate: float | None,
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
