"""LoadTester: set up users, follow a plan with the drivers, clean up, hand back a Run."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from taskforge_perf.config import Target, as_target
from taskforge_perf.engine.assemble import resolve_plan
from taskforge_perf.engine.checks import check_options
from taskforge_perf.engine.http import HttpDriver
from taskforge_perf.engine.load import WATCH_INTERVAL_S, run_load
from taskforge_perf.engine.monitor import Listener
from taskforge_perf.engine.prom import check_port
from taskforge_perf.engine.recorder import LiveCounters
from taskforge_perf.engine.runners import Runner, make_runner
from taskforge_perf.engine.setup import close_folder
from taskforge_perf.engine.shard import Shard, ShardLink
from taskforge_perf.engine.sync import run_blocking
from taskforge_perf.engine.ws import WsDriver, WsOptions
from taskforge_perf.errors import ConfigError, RunError
from taskforge_perf.groups import UserGroup, check_groups, combined_pool
from taskforge_perf.mix import RequestMix
from taskforge_perf.plan import StressPlan
from taskforge_perf.redact import log_redaction
from taskforge_perf.results import DEFAULT_STORE, Run
from taskforge_perf.sessions import Sessions
from taskforge_perf.store import RunFolder
from taskforge_perf.threshold_eval import _coerce as _coerce_thresholds
from taskforge_perf.thresholds import Threshold
from taskforge_perf.users import Strategy, UserPool, random_assignment

__all__ = ["WATCH_INTERVAL_S", "LoadTester", "Progress"]

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

    ``processes=N`` runs the plan as N shards in N local processes, ``runner=tfp.DaskRunner(client)``
    on the workers of a Dask cluster (``engine.shard``: users partitioned, every N-th arrival, even
    shares, one common start); either way the result is one Run with a ``worker`` column and
    ``meta["workers"]``, ``meta["shards"]``. README "Scaling out".
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
        processes: int = 1,
        runner: Runner | None = None,
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
        #: How the run is spread: in this process (None), over local processes or a Dask cluster.
        self.runner: Runner | None = make_runner(processes, runner)
        self.processes = processes
        if self.runner is not None and self.groups:
            raise ConfigError(
                "groups= runs in one process for now; use processes=1 (the default) with groups, "
                "or one pool and mix with processes=N"
            )
        # Set in a worker process only: which shard this tester runs, and its link to the parent.
        self._shard = Shard()
        self._link: ShardLink | None = None
        self._parts_dir: Path | None = None
        self._shard_result: Any = None

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
        plan = resolve_plan(plan, duration, concurrency, rate, think_time)
        if sessions is not None and not isinstance(sessions, Sessions):
            raise ConfigError(
                f"sessions must be a Sessions(journey, rate=...) (got {type(sessions).__name__})"
            )
        if sessions is not None and self.runner is not None:
            raise ConfigError("sessions= runs in one process for now; use processes=1 with sessions")
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
        close_folder(self, stopped)

    # --- the run ---------------------------------------------------------------------------

    async def _run(
        self,
        plan: StressPlan,
        name: str,
        checks: tuple[Threshold, ...] = (),
        wait_for_tasks: float = 0.0,
        save_to: Any = None,
    ) -> Run:
        if self.runner is not None:  # shards over processes or a Dask cluster, merged into one Run
            return await self.runner.run(self, plan, name, checks, wait_for_tasks, save_to)
        run = await run_load(self, plan, name, checks, wait_for_tasks, save_to)
        assert run is not None
        return run

    def _ws_count(self, phase_ws: int | None) -> int:
        return self._shard.share(phase_ws if phase_ws is not None else self.websockets)

    def _wants_ws(self, plan: StressPlan) -> bool:
        return self.websockets > 0 or any(p.websockets for p in plan.phases)
