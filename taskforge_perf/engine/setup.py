"""Set-up of a run: the run folder, the HTTP clients, the reachability check, the users' sign-up and
the WebSocket driver. Functions of a ``LoadTester`` (moved out of ``tester.py``, unchanged in what
they do), used by the load in ``engine.load``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from taskforge_perf.engine.auth import AuthClient
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.failures import status_error
from taskforge_perf.engine.fastclient import FastClient
from taskforge_perf.engine.http import HttpDriver
from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters, WsRecorder
from taskforge_perf.engine.ws import WsDriver, WsOptions
from taskforge_perf.errors import TargetError
from taskforge_perf.plan import StressPlan
from taskforge_perf.redact import redact_text
from taskforge_perf.results import default_store, make_run_id
from taskforge_perf.store import RunFolder

if TYPE_CHECKING:
    from taskforge_perf.engine.tester import LoadTester


def folder_meta(
    tester: LoadTester, plan: StressPlan, name: str, clock: Clock, workers: int = 1
) -> dict[str, Any]:
    """The starting meta of a run folder (before any load)."""
    return {
        "run_id": make_run_id(name, clock.wall_start_ns),
        "name": name,
        "wall_start_ns": clock.wall_start_ns,
        "plan": plan.to_dict(),
        "mix": tester.mix.to_dict(),
        "target": tester.target.to_dict(),
        "users": tester.users.to_dict(),
        "seed": tester.seed,
        "workers": workers,
        "http_client": tester.http_client,
    }


def open_folder(
    tester: LoadTester, plan: StressPlan, name: str, clock: Clock, save_to: Any, workers: int = 1
) -> RunFolder | None:
    """Create the run's folder and its starting meta (before any load), or None (memory only)."""
    if save_to is None and tester.save_dir is None:
        return None
    tester._folder_meta = folder_meta(tester, plan, name, clock, workers)
    run_id = tester._folder_meta["run_id"]
    path = Path(save_to) if save_to is not None else default_store(tester.save_dir) / run_id
    tester._folder = RunFolder.create(path, tester._folder_meta, field="save_to" if save_to else "save_dir")
    return tester._folder


def close_folder(tester: LoadTester, stopped: str) -> None:
    """Mark a run folder left unfinished (error, second interrupt): rows flushed so far stay."""
    folder, tester._folder = tester._folder, None
    if folder is not None:
        try:
            folder.write_meta({**tester._folder_meta, "stopped": stopped})
        except OSError:
            pass


def make_clients(
    tester: LoadTester, plan: StressPlan, in_flight: int
) -> tuple[aiohttp.TCPConnector, FastClient | None, aiohttp.ClientTimeout]:
    """The aiohttp connector (sized for the plan), the fast client and the timeouts of a run."""
    max_conc = max((p.concurrency or 0) for p in plan.phases)
    limit = tester.connections or (max_conc + (in_flight if plan.model != "closed" else 0)) or 100
    connector = aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=0,
        keepalive_timeout=30,
        ssl=True if tester.ssl_context is None else tester.ssl_context,
    )
    fast = (
        FastClient(
            tester.target.base_url,
            timeout=tester.target.request_timeout,
            connect_timeout=tester.target.connect_timeout,
            ssl_context=tester.ssl_context,
        )
        if tester.http_client == "fast"
        else None
    )
    timeout = aiohttp.ClientTimeout(
        total=tester.target.request_timeout, sock_connect=tester.target.connect_timeout
    )
    return connector, fast, timeout


async def check_reachable(
    tester: LoadTester, session: aiohttp.ClientSession, recorder: HttpRecorder, clock: Clock
) -> None:
    """GET /health once (recorded in phase setup); a transport failure is a TargetError."""
    url = tester.target.base_url + "/health"
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
        tester.counters.requests += 1
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise TargetError(
            f"cannot reach the target at {tester.target.display_base_url} "
            f"({type(exc).__name__}: {redact_text(str(exc))}); "
            "is it running, and are Target.base_url's host and port right?"
        ) from None


async def setup_users(tester: LoadTester, auth: AuthClient, counters: LiveCounters) -> int:
    """Sign up / log in every user; the number ready. Too few is a TargetError (fail fast)."""
    ready = await auth.setup(tester.setup_progress)
    if ready == 0:
        raise TargetError(
            f"no user could sign up or log in at {tester.target.display_base_url} "
            f"({len(tester.users)} tried; errors: {counters.errors}); check the target's "
            "auth endpoints and the UserPool's email/password"
        )
    if ready < tester.users.min_ready:
        raise TargetError(
            f"only {ready} of {len(tester.users)} users could sign up or log in at "
            f"{tester.target.base_url}, below UserPool.min_ready={tester.users.min_ready} "
            f"(errors: {counters.errors}); check the target's auth endpoints and the "
            "users' passwords, or lower min_ready"
        )
    return ready


def start_ws(
    tester: LoadTester,
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
    assert tester.target.ws_url is not None
    ws = WsDriver(
        tester.target.ws_url,
        auth,
        logged_in,
        ws_recorder,
        counters,
        clock,
        random.Random(rng.random()),
        phase=lambda: driver.state.phase,
        recent_tasks=driver.recent_tasks,
        options=tester.ws_options or WsOptions(connect_timeout=tester.target.ws_connect_timeout),
    )
    tester._ws_driver = ws
    driver.task_listeners.append(ws.on_task)
    first = plan.at(0.0)
    ws.start(tester._ws_count(first.websockets if first is not None else None))
