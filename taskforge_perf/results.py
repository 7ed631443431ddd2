"""Run: the frames and metadata of one load run, with save/load (Parquet + JSON) and a run store."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from taskforge_perf.errors import ConfigError
from taskforge_perf.redact import redact
from taskforge_perf.schema import HEALTH_SCHEMA, HTTP_SCHEMA, WS_SCHEMA, with_schema_columns

#: Where runs are saved when no directory is given (relative to the working directory).
DEFAULT_STORE = Path("data/runs")
LOAD_EXCLUDED = ("setup", "teardown")


def make_run_id(name: str, wall_ns: int) -> str:
    """``<name>-YYYYmmdd-HHMMSS-mmm`` from the run's wall-clock start; safe as a folder name."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    t = time.gmtime(wall_ns / 1e9)
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S', t)}-{wall_ns // 1_000_000 % 1000:03d}"


class Run:
    """One run: ``events`` (a row per HTTP request), ``ws_events`` and ``meta``.

    Frames given lazily (a loaded run) are read on first access.
    """

    def __init__(
        self,
        events: pl.DataFrame | pl.LazyFrame,
        ws_events: pl.DataFrame | pl.LazyFrame | None,
        meta: dict[str, Any],
        *,
        health: pl.DataFrame | pl.LazyFrame | None = None,
    ) -> None:
        _check_run_args(events, ws_events, meta)
        self._events = events
        self._ws = ws_events if ws_events is not None else pl.DataFrame(schema=WS_SCHEMA)
        self.meta = meta
        self._health = health
        self._load: pl.DataFrame | None = None

    # --- frames --------------------------------------------------------------------------------

    @property
    def events(self) -> pl.DataFrame:
        """Every HTTP request as a row (schema.HTTP_SCHEMA), auth traffic included."""
        if isinstance(self._events, pl.LazyFrame):
            self._events = self._events.collect()
        return self._events

    @property
    def ws_events(self) -> pl.DataFrame:
        """Every WebSocket event as a row (schema.WS_SCHEMA)."""
        if isinstance(self._ws, pl.LazyFrame):
            self._ws = self._ws.collect()
        return self._ws

    @property
    def health(self) -> pl.DataFrame:
        """The generator's own health per monitor interval (engine.health.HEALTH_SCHEMA):
        event-loop lag, CPU share, open-model start lateness. Empty for runs without it."""
        if self._health is None:
            self._health = pl.DataFrame(schema=HEALTH_SCHEMA)
        elif isinstance(self._health, pl.LazyFrame):
            self._health = self._health.collect()
        return self._health

    @property
    def generator_saturated(self) -> bool:
        """True when the tester itself was past its limits (``meta["generator"]["reasons"]``):
        its latencies include the tester's own queueing."""
        return bool((self.meta.get("generator") or {}).get("saturated"))

    def generator_warning(self) -> str | None:
        """The caption shown beside a saturated run's figures (CLI, dashboard, report), or None."""
        g = self.meta.get("generator") or {}
        if not g.get("saturated"):
            return None
        return (
            "WARNING: the load generator was saturated; these numbers include the tester's own "
            "queueing (" + "; ".join(g.get("reasons") or ()) + ")"
        )

    def load_events(self) -> pl.DataFrame:
        """HTTP rows of the load itself (setup and teardown auth traffic left out)."""
        if self._load is None:  # every analysis starts here: filter the frame once
            self._load = self.events.filter(~pl.col("phase").cast(pl.String).is_in(LOAD_EXCLUDED))
        return self._load

    @property
    def name(self) -> str:
        """The run's name."""
        return str(self.meta.get("name", "run"))

    @property
    def run_id(self) -> str:
        """A unique id (name plus start time)."""
        return str(self.meta.get("run_id", self.name))

    @property
    def duration_s(self) -> float:
        """Seconds of load (setup and teardown excluded)."""
        return float(self.meta.get("duration_s") or 0.0)

    def __repr__(self) -> str:
        return (
            f"Run(name={self.name!r}, requests={self.events.height}, "
            f"ws_events={self.ws_events.height}, duration_s={self.duration_s:.1f}, "
            f"stopped={self.meta.get('stopped')!r})"
        )

    # --- analysis ------------------------------------------------------------------------------

    def summary(self, by: Sequence[str] = ("endpoint",), *, include_setup: bool = False) -> pl.DataFrame:
        """Per endpoint: count, rps, errors, error rate, latency and response-time percentiles (ms)."""
        from taskforge_perf import analysis

        frame = self.events if include_setup else self.load_events()
        return analysis.summary(frame, by=tuple(by), duration_s=self.duration_s or None)

    def by_user(self, *, endpoint: bool = False) -> pl.DataFrame:
        """The summary per user (``endpoint=True``: per user x endpoint)."""
        from taskforge_perf import analysis

        if endpoint:
            return analysis.summary(
                self.load_events(), by=("user", "endpoint"), duration_s=self.duration_s or None
            )
        return analysis.summary(self.load_events(), by=("user",), duration_s=self.duration_s or None)

    def overall(self) -> pl.DataFrame:
        """One row for the whole load."""
        from taskforge_perf import analysis

        return analysis.overall(self.load_events(), duration_s=self.duration_s or None)

    def by_phase(self) -> pl.DataFrame:
        """The summary per phase."""
        from taskforge_perf import analysis

        return analysis.by_phase(self.load_events())

    def timeline(self, window_s: float = 1.0, by: Sequence[str] | None = ("endpoint",)) -> pl.DataFrame:
        """Per window: throughput, error rate, latency and response-time p50/p95/p99."""
        from taskforge_perf import analysis

        return analysis.timeline(self.load_events(), window_s=window_s, by=by)

    def spectrum(self, by: Sequence[str] | None = None) -> pl.DataFrame:
        """The HDR percentile spectrum (p0 .. p99.999) of latency and response time."""
        from taskforge_perf import analysis

        return analysis.percentile_spectrum(self.load_events(), by=by)

    def by_group(self, *, endpoint: bool = False) -> pl.DataFrame:
        """``summary`` per user group (``UserGroup`` / ``Sessions`` name), or group x endpoint."""
        from taskforge_perf import analysis

        return analysis.by_group(self.load_events(), endpoint=endpoint, duration_s=self.duration_s or None)

    def sessions_timeline(self, window_s: float = 1.0) -> pl.DataFrame:
        """Concurrent sessions over time (``analysis.sessions_timeline``)."""
        from taskforge_perf import analysis

        return analysis.sessions_timeline(self.events, self.ws_events, window_s=window_s)

    def errors(self) -> pl.DataFrame:
        """Errors by kind, status and endpoint."""
        from taskforge_perf import analysis

        return analysis.errors(self.load_events())

    def slowest_users(self, n: int = 10) -> pl.DataFrame:
        """Users ranked by p95 latency, with their share of the traffic."""
        from taskforge_perf import analysis

        return analysis.slowest_users(self.load_events(), n=n)

    @property
    def charts(self) -> RunCharts:
        """Altair charts of this run (returned, never displayed)."""
        return RunCharts(self)

    # --- plan, thresholds, assessment ----------------------------------------------------------

    @property
    def plan(self) -> Any:
        """The StressPlan the run followed (rebuilt from meta)."""
        from taskforge_perf.plan import StressPlan

        return StressPlan.from_dict(self.meta["plan"])

    def evaluate(self, thresholds: Sequence[Any]) -> pl.DataFrame:
        """Evaluate thresholds (objects or strings) on this run: one pass/fail row each."""
        from taskforge_perf.threshold_eval import evaluate

        return evaluate(
            list(thresholds),
            self.events,
            self.ws_events,
            duration_s=self.duration_s or None,
            plan=self.plan,
            generator=self.meta.get("generator"),
        )

    def thresholds(self) -> pl.DataFrame:
        """The thresholds given to ``run()`` and whether each passed (empty if none were)."""
        rows = self.meta.get("thresholds") or []
        return pl.DataFrame(rows) if rows else pl.DataFrame()

    @property
    def passed(self) -> bool:
        """True when every threshold passed and the run was not aborted or cancelled."""
        return bool(self.meta.get("passed", True)) and self.meta.get("stopped") == "completed"

    def assessment(self, thresholds: Sequence[Any] | None = None) -> pl.DataFrame:
        """Per phase: asked vs achieved throughput, latency, errors, grades, breaking point."""
        from taskforge_perf.assessment import assess

        checks = (
            thresholds
            if thresholds is not None
            else [r["threshold"] for r in self.meta.get("thresholds") or []]
        )
        t0 = self.meta.get("load_start_ns")
        return assess(
            self.plan,
            self.events,
            self.ws_events,
            checks,
            phase_stats=self.meta.get("phases"),
            plan_start_s=t0 / 1e9 if t0 is not None else None,
        )

    def breaking_point(self) -> str | None:
        """The first phase where a threshold failed or achieved fell > 5% below asked, if any."""
        from taskforge_perf.assessment import breaking_point

        return breaking_point(self.assessment())

    def report_json(self) -> dict[str, Any]:
        """The seed's JSON report: timestamp, per-phase results, overall, config (no secrets)."""
        from taskforge_perf.assessment import report_json

        overall = self.overall().to_dicts()
        config = {k: self.meta.get(k) for k in ("name", "target", "users", "mix", "seed", "max_in_flight")}
        return report_json(self.plan, self.assessment(), overall[0] if overall else {}, config)

    def task_latency(self) -> pl.DataFrame:
        """End-to-end task latency per task type and status (created -> status, as clients saw it),
        with per type the tasks created, those never subscribed and those unfinished at the end."""
        from taskforge_perf import analysis

        return analysis.task_latency(self.ws_events, events=self.load_events())

    def ws_summary(self) -> pl.DataFrame:
        """The WebSocket side of the run in one row: opened, failed, dropped, reconnected, messages/s..."""
        from taskforge_perf import analysis

        return analysis.ws_summary(self.ws_events, duration_s=self.duration_s or None)

    # --- persistence ---------------------------------------------------------------------------

    def save(self, path: str | Path | None = None) -> Path:
        """Write ``events.parquet``, ``ws_events.parquet`` and ``meta.json`` to a folder.

        Without a path the run goes to ``data/runs/<run_id>/``. Returns the folder.
        """
        folder = Path(path) if path is not None else DEFAULT_STORE / self.run_id
        folder.mkdir(parents=True, exist_ok=True)
        self.events.write_parquet(folder / "events.parquet")
        self.ws_events.write_parquet(folder / "ws_events.parquet")
        if self._health is not None:
            self.health.write_parquet(folder / "health.parquet")
        # Masked again on the way out: credentials or tokens in any text of meta never reach disk.
        (folder / "meta.json").write_text(json.dumps(redact(self.meta), indent=2, default=str))
        return folder


class RunCharts:
    """``run.charts.<name>()``: the functions of ``taskforge_perf.charts`` applied to a run."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def latency_over_time(self, **kw: Any) -> Any:
        """Latency and response time per window and endpoint, with phase bands."""
        from taskforge_perf import charts

        return charts.latency_over_time(self._run.load_events(), **kw)

    def percentiles(self, **kw: Any) -> Any:
        """The percentile spectrum on a log scale."""
        from taskforge_perf import charts

        return charts.percentiles(self._run.load_events(), **kw)

    def users(self, **kw: Any) -> Any:
        """A user x endpoint heatmap of p95 latency."""
        from taskforge_perf import charts

        return charts.user_endpoint_heatmap(self._run.load_events(), **kw)

    def throughput(self, **kw: Any) -> Any:
        """Requests/s and errors over time."""
        from taskforge_perf import charts

        return charts.throughput(self._run.load_events(), **kw)

    def task_latency(self, **kw: Any) -> Any:
        """The distribution of task end-to-end latency (WebSocket)."""
        from taskforge_perf import charts

        return charts.task_latency_hist(self._run.ws_events, **kw)

    def groups(self, **kw: Any) -> Any:
        """Latency percentiles and throughput per user group."""
        from taskforge_perf import group_charts

        return group_charts.groups(self._run.by_group(), **kw)

    def sessions(self, **kw: Any) -> Any:
        """Concurrent sessions over time."""
        from taskforge_perf import group_charts

        return group_charts.sessions(self._run.sessions_timeline(), **kw)

    def ws_connections(self, **kw: Any) -> Any:
        """Open WebSocket connections over time."""
        from taskforge_perf import charts

        return charts.ws_connections(self._run.ws_events, **kw)


def load_run(path: str | Path, *, lazy: bool = True) -> Run:
    """Load a saved run folder; frames are read lazily unless ``lazy=False``."""
    folder = Path(_check_path("load_run(path)", path))
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise ConfigError(f"{folder} is not a saved run: it has no meta.json (save one with run.save())")
    meta = json.loads(meta_path.read_text())
    events = _read(folder / "events.parquet", HTTP_SCHEMA, lazy)
    ws = _read(folder / "ws_events.parquet", WS_SCHEMA, lazy)
    health_path = folder / "health.parquet"
    health = pl.read_parquet(health_path) if health_path.is_file() else None
    return Run(events, ws, meta, health=health)


def _read(path: Path, schema: dict[str, pl.DataType], lazy: bool) -> pl.DataFrame | pl.LazyFrame:
    if not path.is_file():
        return pl.DataFrame(schema=schema)
    if lazy:  # columns added to the schema since the run was saved come back as nulls
        scan = pl.scan_parquet(path)
        names = scan.collect_schema().names()
        missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in names]
        return scan.with_columns(missing) if missing else scan
    return with_schema_columns(pl.read_parquet(path), schema)


def runs(root: str | Path = DEFAULT_STORE) -> pl.DataFrame:
    """Saved runs under ``root`` as a frame: run_id, name, started, duration, requests, errors, path."""
    rows = []
    for meta_path in sorted(Path(_check_path("runs(root)", root)).glob("*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        counters = meta.get("counters") or {}
        rows.append(
            {
                "run_id": meta.get("run_id", meta_path.parent.name),
                "name": meta.get("name"),
                "started": meta.get("wall_start_ns"),
                "duration_s": meta.get("duration_s"),
                "requests": counters.get("requests"),
                "errors": sum((counters.get("errors") or {}).values()),
                "stopped": meta.get("stopped"),
                "path": str(meta_path.parent),
            }
        )
    schema = {
        "run_id": pl.String,
        "name": pl.String,
        "started": pl.Int64,
        "duration_s": pl.Float64,
        "requests": pl.Int64,
        "errors": pl.Int64,
        "stopped": pl.String,
        "path": pl.String,
    }
    frame = pl.DataFrame(rows, schema=schema)
    return frame.with_columns(pl.from_epoch("started", time_unit="ns").alias("started")).sort("started")


def _check_run_args(events: Any, ws_events: Any, meta: Any) -> None:
    frames = (pl.DataFrame, pl.LazyFrame)
    if not isinstance(events, frames):
        raise ConfigError(f"Run(events=...) must be a Polars DataFrame (got {type(events).__name__})")
    if ws_events is not None and not isinstance(ws_events, frames):
        raise ConfigError(
            f"Run(ws_events=...) must be a Polars DataFrame or None (got {type(ws_events).__name__})"
        )
    if not isinstance(meta, dict):
        raise ConfigError(f"Run(meta=...) must be a dict (use {{}} for none) (got {type(meta).__name__})")


def _check_path(field: str, path: Any) -> str | Path:
    if not isinstance(path, str | Path) or not str(path).strip():
        raise ConfigError(f"{field} must be a folder path (str or Path) (got {path!r})")
    return path
