"""The assembly of a Run: its meta, its frames (from the run folder or memory), its thresholds.

Moved out of ``tester.py``; also used by the runners that merge shards (``engine.runners``).
"""

from __future__ import annotations

import platform
import time
from typing import TYPE_CHECKING, Any

import polars as pl

from taskforge_perf import __version__
from taskforge_perf.engine.auth import AuthClient
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.http import HttpDriver
from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters, WsRecorder
from taskforge_perf.environment import run_environment
from taskforge_perf.errors import ConfigError
from taskforge_perf.plan import StressPlan
from taskforge_perf.results import Run, make_run_id
from taskforge_perf.schema import HTTP_SCHEMA, WS_SCHEMA
from taskforge_perf.store import RunFolder, write_part
from taskforge_perf.thresholds import Threshold

if TYPE_CHECKING:
    from taskforge_perf.engine.tester import LoadTester


def run_meta(
    self: LoadTester,
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
    """The meta of one process's run (or shard)."""
    import aiohttp as _aiohttp

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
        "error_samples": driver.error_samples.to_list(),  # what the target said (issue 16)
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
            "polars": pl.__version__,
        },
        "environment": run_environment(),
    }


def open_run(
    folder: RunFolder,
    meta: dict[str, Any],
    health_frame: pl.DataFrame,
    target_metrics: pl.DataFrame | None,
) -> Run:
    """Compact a run folder's parts and open its frames lazily as a Run."""
    write_part(health_frame, folder.path / "health.parquet")
    if target_metrics is not None and target_metrics.height:
        write_part(target_metrics, folder.path / "target_metrics.parquet")
    folder.finish(meta, {"events": HTTP_SCHEMA, "ws_events": WS_SCHEMA})
    p = folder.path
    return Run(
        pl.scan_parquet(p / "events.parquet"),
        pl.scan_parquet(p / "ws_events.parquet"),
        meta,
        health=health_frame,
        target_metrics=target_metrics,
        path=p,
    )


def evaluate(run: Run, checks: tuple[Threshold, ...], folder: RunFolder | None) -> None:
    """Evaluate the thresholds at the end (into the meta, and its file)."""
    if checks:
        results = run.evaluate(checks)
        run.meta["thresholds"] = results.to_dicts()
        run.meta["passed"] = bool(results["passed"].all())
        if folder is not None:
            folder.write_meta(run.meta)


def finish_run(
    self: LoadTester,
    folder: RunFolder | None,
    meta: dict[str, Any],
    recorder: HttpRecorder,
    ws_recorder: WsRecorder,
    health_frame: pl.DataFrame,
    target_metrics: pl.DataFrame | None,
    checks: tuple[Threshold, ...],
) -> Run:
    """The Run of a one-process run: compact the folder's parts (the Run reads the frames back
    lazily) or keep the frames in memory; thresholds evaluated; kept in ``last_run``."""
    if folder is not None:
        recorder.flush()
        ws_recorder.flush()
        run = open_run(folder, meta, health_frame, target_metrics)
        self._folder = None
    else:
        run = Run(
            recorder.frame(),
            ws_recorder.frame(),
            meta,
            health=health_frame,
            target_metrics=target_metrics,
        )
    evaluate(run, checks, folder)
    self.last_run = run
    return run


def resolve_plan(
    plan: StressPlan | None,
    duration: float | None,
    concurrency: int | None,
    rate: float | None,
    think_time: float,
) -> StressPlan:
    """The plan of ``run()``'s arguments: a plan, or one phase of duration + concurrency | rate."""
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
