"""Run: the frames and metadata of one load run, with save/load (Parquet + JSON) and a run store."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from taskforge_perf.errors import ConfigError
from taskforge_perf.schema import (
    HEALTH_SCHEMA,
    HTTP_SCHEMA,
    TESTER_SIDE_KINDS,
    WS_SCHEMA,
    with_schema_columns,
)
from taskforge_perf.store import FRAMES, check_destination, part_paths, read_meta, write_meta, writer_alive

#: Where runs are saved when no directory is given (relative to the project root, see
#: ``project_root``); the environment variable ``TASKFORGE_PERF_RUNS`` overrides it.
DEFAULT_STORE = Path("data/runs")
_ROOT_MARKERS = ("pyproject.toml", ".git")


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) holding a
    ``pyproject.toml`` or ``.git``; the working directory itself when none does. A notebook in
    ``notebooks/`` thus saves to the project's ``data/runs``, not ``notebooks/data/runs``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / m).exists() for m in _ROOT_MARKERS):
            return folder
    return here


def default_store(save_dir: str | Path | None = DEFAULT_STORE) -> Path:
    """The run store: ``save_dir``, except that the default (``DEFAULT_STORE``) yields to
    ``$TASKFORGE_PERF_RUNS`` when that is set (CI jobs, test suites), else is found under the
    project root (``project_root``), wherever the working directory is."""
    if save_dir is DEFAULT_STORE or save_dir is None:
        env = os.environ.get("TASKFORGE_PERF_RUNS")
        return Path(env) if env else project_root() / DEFAULT_STORE
    return Path(save_dir)


LOAD_EXCLUDED = ("setup", "teardown")
#: Columns of ``run.target_metrics``: the target's /metrics samples on the run's clock.
TARGET_METRICS_SCHEMA: dict[str, pl.DataType] = {
    "t": pl.Int64(),  # ns since the run's start, like events.t_start (the scrape's answer)
    "name": pl.String(),  # sample name, e.g. taskforge_http_requests_total, ..._bucket
    "labels": pl.String(),  # the sample's labels in Prometheus text: route="POST /tasks",status="202"
    "value": pl.Float64(),
}


def make_run_id(name: str, wall_ns: int) -> str:
    """``<name>-YYYYmmdd-HHMMSS-mmm`` from the run's wall-clock start; safe as a folder name."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    t = time.gmtime(wall_ns / 1e9)
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S', t)}-{wall_ns // 1_000_000 % 1000:03d}"


class Run:
    """One run: ``events`` (a row per HTTP request), ``ws_events`` and ``meta``.

    Frames given lazily (a loaded run, or one that streamed to its folder) are read on first
    access. ``path`` is the folder the run lives in on disk, its frames' source (None for a
    memory-only run).
    """

    def __init__(
        self,
        events: pl.DataFrame | pl.LazyFrame,
        ws_events: pl.DataFrame | pl.LazyFrame | None,
        meta: dict[str, Any],
        *,
        health: pl.DataFrame | pl.LazyFrame | None = None,
        target_metrics: pl.DataFrame | pl.LazyFrame | None = None,
        path: str | Path | None = None,
    ) -> None:
        _check_run_args(events, ws_events, meta)
        if target_metrics is not None and not isinstance(target_metrics, pl.DataFrame | pl.LazyFrame):
            raise ConfigError(
                "Run(target_metrics=...) must be a Polars DataFrame or None "
                f"(got {type(target_metrics).__name__})"
            )
        self._target = target_metrics
        self._events = events
        self._ws = ws_events if ws_events is not None else pl.DataFrame(schema=WS_SCHEMA)
        self.meta = meta
        self._health = health
        self.path = Path(path) if path is not None else None
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

    @property
    def target_metrics(self) -> pl.DataFrame:
        """The target's own /metrics samples scraped during the run: t (ns, the events' clock),
        name, labels (Prometheus text), value; empty when not scraped (``Target(metrics_url=None)``)."""
        if self._target is None:
            self._target = pl.DataFrame(schema=TARGET_METRICS_SCHEMA)
        elif isinstance(self._target, pl.LazyFrame):
            self._target = self._target.collect()
        return self._target

    def load_events(self) -> pl.DataFrame:
        """HTTP rows of the load itself (setup and teardown auth traffic left out)."""
        if self._load is None:  # every analysis starts here: filter the frame once
            self._load = self.events.filter(
                ~pl.col("phase").cast(pl.String).is_in(LOAD_EXCLUDED).fill_null(False)
            )
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

    def summary(
        self,
        by: Sequence[str] | str = ("endpoint",),
        *,
        include_setup: bool = False,
        include: Any = "answered",
    ) -> pl.DataFrame:
        """Per endpoint: count, answered, not sent, rps, errors, error rate, latency and
        response-time percentiles (ms) over answered rows (``include=``: see ``analysis.summary``)."""
        from taskforge_perf import analysis

        frame = self.events if include_setup else self.load_events()
        by = (by,) if isinstance(by, str) else tuple(by)  # "user" is one key, not four letters
        return analysis.summary(frame, by=by, duration_s=self.duration_s or None, include=include)

    def table(self, by: Sequence[str] | str = ("endpoint",), **kw: Any) -> Any:
        """``summary(by)`` as a formatted table (units, percentages, separators): ``display_table``."""
        from taskforge_perf.tables import display_table

        return display_table(self.summary(by), **kw)

    def by_user(self, *, endpoint: bool = False, include: Any = "answered") -> pl.DataFrame:
        """The summary per user (``endpoint=True``: per user x endpoint)."""
        from taskforge_perf import analysis

        by = ("user", "endpoint") if endpoint else ("user",)
        return analysis.summary(
            self.load_events(), by=by, duration_s=self.duration_s or None, include=include
        )

    def overall(self, *, include: Any = "answered") -> pl.DataFrame:
        """One row for the whole load."""
        from taskforge_perf import analysis

        return analysis.overall(self.load_events(), duration_s=self.duration_s or None, include=include)

    def _plan_start_s(self) -> float | None:
        t0 = self.meta.get("load_start_ns")
        return t0 / 1e9 if t0 is not None else None

    def by_phase(self, *, include: Any = "answered") -> pl.DataFrame:
        """The summary per phase; ``rps`` = answered per second over the phase's planned window."""
        from taskforge_perf import analysis

        plan = self.plan if self.meta.get("plan") else None
        return analysis.by_phase(
            self.load_events(), plan=plan, plan_start_s=self._plan_start_s(), include=include
        )

    def timeline(
        self, window_s: float = 1.0, by: Sequence[str] | None = ("endpoint",), *, include: Any = "answered"
    ) -> pl.DataFrame:
        """Per window: throughput (answered/s), error rate, latency and response-time p50/p95/p99."""
        from taskforge_perf import analysis

        # The observed span scales partial first/last windows: from the load's start to the plan's
        # end, or to the last start of a sent request if one started later (a draining schedule).
        start = self._plan_start_s()
        end = start + self.plan.duration if start is not None and self.meta.get("plan") else None
        if end is not None:
            last = self.load_events().filter(analysis.sent_expr())["t_start"].max()
            end = max(end, last / 1e9) if isinstance(last, int) else end
        return analysis.timeline(
            self.load_events(), window_s=window_s, by=by, include=include, start_s=start, end_s=end
        )

    def spectrum(self, by: Sequence[str] | None = None, *, include: Any = "answered") -> pl.DataFrame:
        """The HDR percentile spectrum (p0 .. p99.999) of latency and response time."""
        from taskforge_perf import analysis

        return analysis.percentile_spectrum(self.load_events(), by=by, include=include)

    def outcomes(self, by: Sequence[str] | None = None) -> pl.DataFrame:
        """Load rows per outcome: answered, errors, target failures, not sent (dropped, cancelled...)."""
        from taskforge_perf import analysis

        return analysis.outcomes(self.load_events(), by=by)

    def headline(self) -> list[str]:
        """Headline lines: load requests and errors, what was not sent, setup/teardown auth outcomes."""
        from taskforge_perf import analysis

        return analysis.headline_lines(self.events)

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

    def error_samples(self) -> pl.DataFrame:
        """What the target said: the first failing requests (at most 3) of each (endpoint, status,
        error kind), with the answer's body text or a transport failure's message, redacted
        (``taskforge_perf.error_samples``; empty for runs saved before they were kept)."""
        from taskforge_perf.error_samples import samples_frame

        return samples_frame(self.meta)

    def slowest_users(self, n: int = 10, *, include: Any = "answered") -> pl.DataFrame:
        """Users ranked by p95 latency, with their share of the traffic."""
        from taskforge_perf import analysis

        return analysis.slowest_users(self.load_events(), n=n, include=include)

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
            plan_start_s=self._plan_start_s(),
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
            generator=self.meta.get("generator"),
            health=self.health,
        )

    def breaking_point(self) -> str | None:
        """The first phase where the target stopped keeping up (a threshold failed, or it answered
        > 5% less than the tester offered), if any; never a phase where the tester could not keep
        up (``assessment.findings`` says which, beside pass/fail)."""
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
        """Write ``events.parquet``, ``ws_events.parquet`` and ``meta.json`` to a folder; returns it.

        A run that streamed to its folder (the default) is already saved there: ``save()`` (or
        ``save(run.path)``) only rewrites its meta (and compacts the part files of a crashed or
        interrupted run loaded with ``load_run``). Another path gets a copy (a file copy of the
        Parquet the frames were read from: no memory); ``run.path`` keeps pointing at the original.
        Without a path a memory-only run goes to ``data/runs/<run_id>/``. A folder holding a
        different run (or unrelated files) is refused with a ConfigError, never overwritten.
        """
        if path is None:
            folder = self.path if self.path is not None else default_store() / self.run_id
        else:
            folder = Path(path)
        same = self.path is not None and folder.resolve() == self.path.resolve()
        if same and self.meta.get("stopped") == "running":
            raise ConfigError(
                f"run {self.run_id!r} is still being recorded in {str(folder)!r}; save it to another "
                "path (run.save('other/folder')) or load it again once it has ended"
            )
        if same and (folder / "events.parquet").is_file():
            write_meta(folder, self.meta)
            return folder
        if not same:
            check_destination(folder, self.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        frames = (
            ("events", self._events),
            ("ws_events", self._ws),
            ("health", self._health),
            (
                "target_metrics",
                self._target if self._target is not None and self.target_metrics.height else None,
            ),
        )
        for name, frame in frames:
            if frame is None:
                continue
            tmp = folder / f".{name}.parquet.tmp"
            src = self.path / f"{name}.parquet" if self.path is not None and not same else None
            if src is not None and src.is_file():
                shutil.copyfile(src, tmp)  # the frames came from there: a file copy, no memory
            elif isinstance(frame, pl.LazyFrame):
                frame.sink_parquet(tmp)
            else:
                frame.write_parquet(tmp)
            tmp.replace(folder / f"{name}.parquet")
            if same:  # a crashed or interrupted run's parts, now compacted
                for part in part_paths(folder, name):
                    part.unlink()
        # Masked again on the way out: credentials or tokens in any text of meta never reach disk.
        write_meta(folder, self.meta)
        if self.path is None:
            self.path = folder
        return folder


class RunCharts:
    """``run.charts.<name>()``: the functions of ``taskforge_perf.charts`` applied to a run."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def _clock(self) -> dict[str, Any]:
        """The load's span and the plan's phase bands on the run clock (from meta)."""
        from taskforge_perf.chart_style import plan_bands

        m = self._run.meta
        lo, hi = m.get("load_start_ns"), m.get("load_end_ns")
        return {
            "start_s": lo / 1e9 if lo is not None else None,
            "end_s": hi / 1e9 if hi is not None else None,
            "phases": plan_bands(m),
        }

    def latency_over_time(self, **kw: Any) -> Any:
        """Latency and response time per window and endpoint, with the plan's phase bands."""
        from taskforge_perf import charts

        return charts.latency_over_time(self._run.load_events(), **{**self._clock(), **kw})

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
        from taskforge_perf.chart_style import planned_rate

        defaults = {**self._clock(), "planned": planned_rate(self._run.meta)}
        return charts.throughput(self._run.load_events(), **{**defaults, **kw})

    def errors(self, **kw: Any) -> Any:
        """Target-side errors per second by kind over time."""
        from taskforge_perf.charts_errors import errors_over_time

        clock = {k: v for k, v in self._clock().items() if k != "phases"}
        return errors_over_time(self._run.load_events(), **{**clock, **kw})

    def task_latency(self, **kw: Any) -> Any:
        """The distribution of task end-to-end latency (WebSocket)."""
        from taskforge_perf import charts

        return charts.task_latency_hist(self._run.ws_events, **kw)

    def groups(self, **kw: Any) -> Any:
        """Latency percentiles and throughput per user group."""
        from taskforge_perf import group_charts
        from taskforge_perf.chart_style import finish

        return finish(group_charts.groups(self._run.by_group(), **kw))

    def sessions(self, **kw: Any) -> Any:
        """Concurrent sessions over time."""
        from taskforge_perf import group_charts
        from taskforge_perf.chart_style import finish

        return finish(group_charts.sessions(self._run.sessions_timeline(), **kw))

    def ws_connections(self, **kw: Any) -> Any:
        """Open WebSocket connections over time."""
        from taskforge_perf import charts

        return charts.ws_connections(self._run.ws_events, **kw)

    def target_vs_client(self, **kw: Any) -> Any:
        """Client-side latency over time above the target's own scraped metrics (queues, rates)."""
        from taskforge_perf.charts_target import target_vs_client

        clock = {k: v for k, v in self._clock().items() if k != "phases"}
        return target_vs_client(self._run.load_events(), self._run.target_metrics, **{**clock, **kw})


def load_run(path: str | Path | Run, *, lazy: bool = True) -> Run:
    """Load a run folder; frames are read lazily unless ``lazy=False``. A ``Run`` is returned as
    it is (``compare``, ``report`` and ``load_run`` all take a run or its folder).

    Also opens a run still being recorded (``meta["stopped"] == "running"``: the rows flushed so
    far) and a crashed one (the process that wrote it is gone: reported as ``"crashed"``, with every
    row flushed before the crash, i.e. all but at most the last ``FLUSH_INTERVAL_S`` seconds).
    """
    if isinstance(path, Run):
        return path
    folder = Path(_check_path("load_run(path)", path))
    meta = read_meta(folder)
    if meta is None:
        raise ConfigError(
            f"{folder} is not a saved run: it has no readable meta.json (save one with run.save())"
        )
    if meta.get("stopped") == "running" and writer_alive(meta.get("writer")) is False:
        meta["stopped"] = "crashed"
    frames = [
        _read(folder, name, schema, lazy)
        for name, schema in zip(FRAMES, (HTTP_SCHEMA, WS_SCHEMA), strict=True)
    ]
    if meta.get("duration_s") is None and meta.get("load_start_ns") is not None:
        t_end = frames[0].lazy().select(pl.col("t_end").max()).collect().item()
        meta["duration_s"] = max(0.0, (t_end - meta["load_start_ns"]) / 1e9) if t_end is not None else 0.0
    health_path = folder / "health.parquet"
    health = pl.read_parquet(health_path) if health_path.is_file() else None
    target = folder / "target_metrics.parquet"
    return Run(
        frames[0],
        frames[1],
        meta,
        health=health,
        target_metrics=(pl.scan_parquet(target) if lazy else pl.read_parquet(target))
        if target.is_file()
        else None,
        path=folder,
    )


def _read(folder: Path, name: str, schema: dict[str, pl.DataType], lazy: bool) -> pl.DataFrame | pl.LazyFrame:
    path = folder / f"{name}.parquet"
    if path.is_file():
        if lazy:  # columns added to the schema since the run was saved come back as nulls
            scan = pl.scan_parquet(path)
            names = scan.collect_schema().names()
            missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in names]
            return scan.with_columns(missing) if missing else scan
        return with_schema_columns(pl.read_parquet(path), schema)
    # A run still going (or crashed): its part files, read now (the writer may compact them later).
    parts = part_paths(folder, name)
    if not parts:
        return pl.DataFrame(schema=schema)
    return with_schema_columns(pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed"), schema)


def runs(root: str | Path | None = None) -> pl.DataFrame:
    """Saved runs under ``root`` (default: the run store) as a frame: run_id, name, started,
    duration, requests, errors, stopped, path.

    Read from each run's meta only (fast): ``requests`` and ``errors`` are the engine's counters,
    set-up included; ``errors`` leaves out tester-side kinds (dropped, cancelled, auth, client). A
    run whose writer process is gone while its meta still says ``running`` is listed as crashed.
    """
    rows = []
    store = default_store(None if root is None else _check_path("runs(root)", root))
    for meta_path in sorted(store.glob("*/meta.json")):
        meta = read_meta(meta_path.parent)
        if meta is None:
            continue
        if meta.get("stopped") == "running" and writer_alive(meta.get("writer")) is False:
            meta["stopped"] = "crashed"
        counters = meta.get("counters") or {}
        rows.append(
            {
                "run_id": meta.get("run_id", meta_path.parent.name),
                "name": meta.get("name"),
                "started": meta.get("wall_start_ns"),
                "duration_s": meta.get("duration_s"),
                "requests": counters.get("requests"),
                "errors": sum(
                    v for k, v in (counters.get("errors") or {}).items() if k not in TESTER_SIDE_KINDS
                ),
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
