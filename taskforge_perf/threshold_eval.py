"""Evaluating thresholds on a run's frames: the pass/fail table and the in-run abort watch. Pure.

HTTP metrics use the row sets of ``analysis.summary`` (one definition, documented in
``analysis_core``): load rows only (setup/teardown left out unless a threshold names the phase);
latency and response-time statistics over **answered** rows; ``error_rate`` = target-side errors
(answered 4xx/5xx and target failures) / sent rows (tester-side rows, such as dropped or cancelled,
are in neither); ``rps`` = answered rows / duration, and for a phase with the plan known, answered
responses completed inside the phase's planned window / window (``analysis.by_phase``'s ``rps``).
So ``p95(endpoint) < X`` judges the very figure ``run.summary()`` shows as that endpoint's p95.

>>> from taskforge_perf.thresholds import Threshold
>>> watch = ThresholdWatch([Threshold.parse("error_rate < 10%", abort_on_fail=True)])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import polars as pl

from taskforge_perf.analysis_core import load_expr
from taskforge_perf.analysis_phase import phase_windows
from taskforge_perf.schema import answered_expr, sent_expr
from taskforge_perf.threshold_stream import LatencyHistogram
from taskforge_perf.thresholds import _GEN, _QUANTILES, _WS, Threshold, ThresholdError

if TYPE_CHECKING:
    from taskforge_perf.plan import StressPlan

__all__ = ["RESULT_SCHEMA", "ThresholdWatch", "evaluate", "passed", "rescope"]

RESULT_SCHEMA: dict[str, pl.DataType] = {
    "threshold": pl.String(),
    "metric": pl.String(),
    "scope": pl.String(),
    "actual": pl.Float64(),
    "op": pl.String(),
    "limit": pl.Float64(),
    "unit": pl.String(),
    "passed": pl.Boolean(),
    "rows": pl.Int64(),
    "abort_on_fail": pl.Boolean(),
    "note": pl.String(),
}


def _in_scope(events: pl.DataFrame, th: Threshold, *, by_phase: bool = True) -> pl.DataFrame:
    """The threshold's rows of every outcome: its phase (else the load phases) and endpoint."""
    if th.phase is not None and by_phase:
        cond = pl.col("phase").cast(pl.String) == th.phase
    else:
        cond = load_expr()
    if th.endpoint is not None:
        cond &= pl.col("endpoint").cast(pl.String) == th.endpoint
    return events.filter(cond)


def _covers(metric: str) -> pl.Expr:
    """The rows an HTTP metric covers: sent rows for ``error_rate``, answered rows otherwise."""
    return sent_expr() if metric == "error_rate" else answered_expr()


def _scoped_http(events: pl.DataFrame, th: Threshold) -> pl.DataFrame:
    """The rows ``th``'s metric is computed over (``summary()``'s row sets): in scope, and sent
    (``error_rate``: a non-null ``error`` among them is a target-side error) or answered (latency,
    response time, ``rps``). Incremental watchers can sum these rows chunk by chunk."""
    return _in_scope(events, th).filter(_covers(th.metric))


def _stat_expr(stat: str, col: pl.Expr) -> pl.Expr:
    if stat in _QUANTILES:
        return col.quantile(_QUANTILES[stat], interpolation="linear")
    return col.max() if stat == "max" else col.mean()


def _task_latencies(ws_events: pl.DataFrame, events: pl.DataFrame | None, th: Threshold) -> pl.DataFrame:
    done = (
        ws_events.filter(
            (pl.col("kind").cast(pl.String) == "message")
            & (pl.col("status").cast(pl.String) == "completed")
            & pl.col("task_id").is_not_null()
            & pl.col("since_created_ns").is_not_null()
        )
        .sort("t")
        .group_by("task_id", maintain_order=True)
        .agg(
            pl.first("since_created_ns"),
            pl.first("task_type").cast(pl.String),
            pl.first("phase").cast(pl.String).alias("msg_phase"),
        )
    )
    if th.endpoint is not None:
        done = done.filter(pl.col("task_type") == th.endpoint)
    if th.phase is not None:
        if events is not None and "task_id" in events.columns:
            created = (
                events.filter(pl.col("task_id").is_not_null())
                .group_by("task_id")
                .agg(pl.first("phase").cast(pl.String))
            )
            done = done.join(created, on="task_id", how="left").with_columns(
                pl.coalesce("phase", "msg_phase").alias("msg_phase")
            )
        done = done.filter(pl.col("msg_phase") == th.phase)
    return done


def _measure(
    th: Threshold,
    events: pl.DataFrame,
    ws_events: pl.DataFrame | None,
    duration_s: float | None,
    generator: Mapping[str, Any] | None = None,
    *,
    plan: StressPlan | None = None,
    plan_start_s: float | None = None,
) -> tuple[float | None, int, str | None]:
    """(actual, rows the figure covers, note) for one threshold."""
    m = th.metric
    if m in _GEN:
        return _measure_generator(m, generator)
    if m in _WS or m.startswith("task_latency."):
        if ws_events is None:
            return None, 0, "no WebSocket frame given"
        if m.startswith("task_latency."):
            done = _task_latencies(ws_events, events, th)
            if done.height == 0:
                return None, 0, "no completed tasks in scope"
            ms = pl.col("since_created_ns").cast(pl.Float64) / 1e6
            return done.select(_stat_expr(m.split(".", 1)[1], ms)).item(), done.height, None
        rows = ws_events
        if th.phase is not None:
            rows = rows.filter(pl.col("phase").cast(pl.String) == th.phase)
        col, want = (
            ("kind", "connect_error")
            if m == "ws.failed"
            else ("kind", "reconnect")
            if m == "ws.reconnects"
            else (
                "error",
                {
                    "ws.dropped": "dropped",
                    "ws.rejected": "rejected",
                    "ws.lost": "lost_subscription",
                }[m],
            )
        )
        n = rows.filter(pl.col(col).cast(pl.String) == want).height
        return float(n), rows.height, None
    scope = _in_scope(events, th)
    if scope.height == 0:
        return None, 0, "no requests in scope"
    rows = scope.filter(_covers(m))
    if m == "error_rate":
        if rows.height == 0:
            return None, 0, "no request in scope was sent (all tester-side)"
        return rows["error"].is_not_null().mean(), rows.height, None  # type: ignore[return-value]
    if m == "rps":
        if th.phase is not None and plan is not None:  # by_phase's achieved throughput
            win = phase_windows(plan, events.filter(load_expr()), plan_start_s).filter(
                pl.col("phase") == th.phase
            )
            t0, t1, window = win["t0_ns"][0], win["t1_ns"][0], win["window_s"][0]
            ends = _in_scope(events, th, by_phase=False).filter(answered_expr())["t_end"]
            n = int(((ends >= t0) & (ends < t1)).sum())
            return n / window, n, None
        if duration_s is None:
            span = rows.select(pl.col("t_end").max() - pl.col("t_start").min()).item()
            duration_s = (span or 0) / 1e9
        if not duration_s or duration_s <= 0:
            return None, rows.height, "duration unknown; pass duration_s="
        return rows.height / duration_s, rows.height, None
    if rows.height == 0:
        return None, 0, "no answered requests in scope"
    start = "t_intended" if m.startswith("resp_") else "t_start"
    stat = m.removeprefix("resp_")
    ms = (pl.col("t_end") - pl.col(start)).cast(pl.Float64) / 1e6
    return rows.select(_stat_expr(stat, ms)).item(), rows.height, None


def _measure_generator(m: str, generator: Mapping[str, Any] | None) -> tuple[float | None, int, str | None]:
    """A ``generator.*`` metric from the run's ``meta["generator"]`` (rows: the lag timer's ticks)."""
    if not generator:
        return None, 0, "no generator health (meta['generator']) given"
    v = generator.get(_GEN[m])
    n = int(generator.get("ticks") or 0)
    return (None, n, "not measured in this run") if v is None else (float(v), n, None)


def _duration_for(th: Threshold, duration_s: float | None, plan: StressPlan | None) -> float | None:
    if plan is not None and th.phase is not None:
        for ph in plan.phases:
            if ph.name == th.phase:
                return ph.duration
    if th.phase is None:
        if duration_s is not None:
            return duration_s
        if plan is not None:
            return plan.duration
    return None


def _coerce(thresholds: Iterable[Threshold | str] | Threshold | str | None) -> list[Threshold]:
    if thresholds is None:
        return []
    if isinstance(thresholds, Threshold | str):
        thresholds = [thresholds]
    if not isinstance(thresholds, Iterable):
        raise ThresholdError(
            f"thresholds must be a list of Threshold objects or strings such as 'p95 < 300ms' "
            f"(got {type(thresholds).__name__})"
        )
    out = []
    for t in thresholds:
        if isinstance(t, str):
            t = Threshold.parse(t)
        if not isinstance(t, Threshold):
            raise ThresholdError(f"thresholds must be Threshold objects or strings (got {type(t).__name__})")
        out.append(t)
    return out


def evaluate(
    thresholds: Iterable[Threshold | str] | Threshold | str,
    events: pl.DataFrame,
    ws_events: pl.DataFrame | None = None,
    *,
    duration_s: float | None = None,
    plan: StressPlan | None = None,
    generator: Mapping[str, Any] | None = None,
    plan_start_s: float | None = None,
) -> pl.DataFrame:
    """One row per threshold: threshold, metric, scope, actual, op, limit, unit, passed, rows
    (the rows the figure covers: answered rows for latency, sent rows for error_rate),
    abort_on_fail, note. A scope with no rows has a null actual, fails, and says why in ``note``.

    ``duration_s`` is the run's load duration for run-wide ``rps``; with ``plan`` given, a
    phase-scoped ``rps`` is the phase's achieved throughput over its planned window, placed on
    the run clock at ``plan_start_s`` (inferred from the rows when None). ``generator`` is the
    run's ``meta["generator"]`` (for ``generator.*`` metrics).

    >>> import polars as pl
    >>> ev = pl.DataFrame({"t_intended": [0, 0], "t_start": [0, 0], "t_end": [10**8, 3 * 10**8],
    ...                    "error": [None, None], "endpoint": ["GET /health"] * 2,
    ...                    "phase": ["load"] * 2})
    >>> evaluate(["max < 200ms"], ev)["passed"].to_list()
    [False]
    """
    rows = []
    for th in _coerce(thresholds):
        actual, n, note = _measure(
            th,
            events,
            ws_events,
            _duration_for(th, duration_s, plan),
            generator,
            plan=plan,
            plan_start_s=plan_start_s,
        )
        ok = th.check(actual)
        rows.append(
            {
                "threshold": str(th),
                "metric": th.metric,
                "scope": th.scope,
                "actual": None if actual is None else float(actual),
                "op": th.op,
                "limit": th.value,
                "unit": th.unit,
                "passed": ok,
                "rows": n,
                "abort_on_fail": th.abort_on_fail,
                "note": note,
            }
        )
    return pl.DataFrame(rows, schema=RESULT_SCHEMA)


def passed(results: pl.DataFrame) -> bool:
    """True when every threshold in an :func:`evaluate` result passed (and there was one)."""
    return results.height > 0 and bool(results["passed"].all())


class ThresholdWatch:
    """Checks the ``abort_on_fail`` thresholds during a run (pure; call it about once a second).

    Two ways to feed it: ``check(rows_so_far)`` measures the frames it is given (every row, each
    time); the engine uses ``add(new_rows)`` then ``poll()``, whose cost per call is proportional
    to the rows added since the last call (percentiles from a histogram within ±0.5 %, see
    ``threshold_stream``; error rates, rps, max and mean exact). The final evaluation after the
    run (``evaluate``) is always exact.

    A scope with fewer than ``min_rows`` rows is not judged yet (``ws.*`` counts always are).
    Once a threshold breaches, the watch stays breached and :attr:`breach` holds its result row.

    >>> watch = ThresholdWatch([Threshold.parse("error_rate < 10%", abort_on_fail=True)])
    >>> watch.thresholds[0].metric
    'error_rate'
    """

    def __init__(self, thresholds: Iterable[Threshold | str], *, min_rows: int = 1) -> None:
        self.thresholds: tuple[Threshold, ...] = tuple(t for t in _coerce(thresholds) if t.abort_on_fail)
        if not isinstance(min_rows, int) or min_rows < 1:
            raise ThresholdError(f"ThresholdWatch: min_rows must be an integer >= 1 (got {min_rows!r})")
        self.min_rows = min_rows
        self.breached: Threshold | None = None
        self.breach: dict[str, object] | None = None
        # Incremental state (add / poll).
        self._acc: list[_Running] | None = None
        self._ws: list[pl.DataFrame] = []
        self._tasks: list[pl.DataFrame] = []
        self._keep_tasks = any(t.metric.startswith("task_latency.") and t.phase for t in self.thresholds)
        #: True when a ``generator.*`` threshold is watched (``poll`` then wants ``generator=``).
        self.needs_generator = any(t.metric in _GEN for t in self.thresholds)

    def check(
        self,
        events_so_far: pl.DataFrame,
        ws_so_far: pl.DataFrame | None = None,
        *,
        elapsed_s: float | None = None,
        plan: StressPlan | None = None,
        generator: Mapping[str, Any] | None = None,
    ) -> Threshold | None:
        """The first breached abort-on-fail threshold, or None. ``elapsed_s`` is the load time
        so far (for run-wide ``rps``)."""
        if self.breached is not None:
            return self.breached
        for th in self.thresholds:
            duration = elapsed_s if th.phase is None else _duration_for(th, None, plan)
            actual, n, note = _measure(th, events_so_far, ws_so_far, duration, generator)
            if self._judge(th, actual, n, note):
                return th
        return None

    # --- incremental: the engine's path (cost per call proportional to the new rows) -----------

    def add(self, new_events: pl.DataFrame, new_ws: pl.DataFrame | None = None) -> None:
        """Take in the rows recorded since the last ``add`` (HTTP and WebSocket).

        HTTP metrics keep running counts, sums, maxima and a latency histogram per threshold
        (``threshold_stream``: percentiles within ±0.5 %, the rest exact); WebSocket metrics
        (rare rows) are measured on the WebSocket rows kept so far.
        """
        if self._acc is None:
            self._acc = [_Running(th) for th in self.thresholds]
        if new_events.height:
            for acc in self._acc:
                acc.add(new_events)
            if self._keep_tasks:
                self._tasks.append(new_events.filter(pl.col("task_id").is_not_null()))
        if new_ws is not None and new_ws.height:
            self._ws.append(new_ws)

    def poll(
        self,
        *,
        elapsed_s: float | None = None,
        plan: StressPlan | None = None,
        generator: Mapping[str, Any] | None = None,
    ) -> Threshold | None:
        """``check`` over every row given to ``add`` so far: the first breached threshold, or None."""
        if self.breached is not None:
            return self.breached
        if self._acc is None:
            self.add(pl.DataFrame())
        assert self._acc is not None
        ws = tasks = None
        for th, acc in zip(self.thresholds, self._acc, strict=True):
            duration = elapsed_s if th.phase is None else _duration_for(th, None, plan)
            if acc.incremental:
                actual, n, note = acc.value(duration)
            else:
                if ws is None:
                    ws = self._ws = [pl.concat(self._ws)] if self._ws else []
                    tasks = self._tasks = [pl.concat(self._tasks)] if self._tasks else []
                frame = tasks[0] if tasks else pl.DataFrame()
                actual, n, note = _measure(th, frame, ws[0] if ws else None, duration, generator)
            if self._judge(th, actual, n, note):
                return th
        return None

    def _judge(self, th: Threshold, actual: float | None, n: int, note: str | None) -> bool:
        if actual is None or (n < self.min_rows and th.metric not in _WS and th.metric not in _GEN):
            return False
        if th.check(actual):
            return False
        self.breached = th
        self.breach = {"threshold": str(th), "actual": actual, "limit": th.value, "rows": n, "note": note}
        return True


class _Running:
    """One HTTP threshold's running measure (counts, sum, max, histogram) over scoped rows."""

    def __init__(self, th: Threshold) -> None:
        self.th = th
        m = th.metric
        self.incremental = m not in _WS and m not in _GEN and not m.startswith("task_latency.")
        self.n = 0
        self.errors = 0
        self.hist = LatencyHistogram() if self.incremental and m not in ("error_rate", "rps") else None

    def add(self, events: pl.DataFrame) -> None:
        if not self.incremental:
            return
        rows = _scoped_http(events, self.th)
        self.n += rows.height
        m = self.th.metric
        if m == "error_rate":
            self.errors += int(rows["error"].is_not_null().sum())
        elif self.hist is not None and rows.height:
            start = "t_intended" if m.startswith("resp_") else "t_start"
            self.hist.add(rows.select((pl.col("t_end") - pl.col(start)).cast(pl.Float64) / 1e6).to_series())

    def value(self, duration_s: float | None) -> tuple[float | None, int, str | None]:
        if self.n == 0:
            return None, 0, "no requests in scope"
        m = self.th.metric
        if m == "error_rate":
            return self.errors / self.n, self.n, None
        if m == "rps":
            if not duration_s or duration_s <= 0:
                return None, self.n, "duration unknown; pass duration_s="
            return self.n / duration_s, self.n, None
        assert self.hist is not None
        stat = m.removeprefix("resp_")
        if stat == "max":
            return self.hist.max, self.n, None
        if stat == "mean":
            return self.hist.mean(), self.n, None
        return self.hist.quantile(_QUANTILES[stat]), self.n, "streaming estimate (±0.5 %)"


def rescope(thresholds: Sequence[Threshold], phase: str) -> list[Threshold]:
    """The thresholds that apply to ``phase`` (run-wide ones and those scoped to it), all
    scoped to ``phase``; used to judge a run phase by phase."""
    return [replace(t, phase=phase) for t in thresholds if t.phase in (None, phase) and t.metric not in _GEN]
