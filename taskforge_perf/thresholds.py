"""Pass/fail thresholds as data (like k6), evaluated over a run's frames. Pure.

Build them with the small factories or parse them from text:

>>> p95("POST /tasks") < 300
Threshold('p95', '<', 300.0, endpoint='POST /tasks')
>>> Threshold.parse("error_rate < 1%")
Threshold('error_rate', '<', 0.01)
>>> Threshold.parse("task_latency.p99 < 5s").value
5000.0

Units: latency and response-time metrics (``p50`` ... ``max``, ``mean``, ``resp_*``) and
``task_latency.*`` are in milliseconds; ``error_rate`` is a fraction 0..1; ``rps`` is requests/s;
``ws.*`` are counts of WebSocket rows.

What the metrics read:
- latency = ``t_end - t_start``; response time (``resp_*``) = ``t_end - t_intended`` (includes the
  time a request waited behind the schedule: coordinated omission stays visible);
- ``error_rate`` = rows with a non-null ``error`` / rows;
- ``rps`` = rows / duration (``duration_s``, else the plan's phase or total duration, else the
  span of the rows);
- ``task_latency.<stat>`` = ``since_created_ns`` of the first ``completed`` message per task;
  ``endpoint=`` scopes it to a task type (``"generate-pdf"``), ``phase=`` to the phase of the HTTP
  row that created the task (else of the message);
- ``ws.dropped`` / ``ws.rejected`` / ``ws.lost`` count rows whose error is ``dropped`` /
  ``rejected`` / ``lost_subscription``; ``ws.failed`` counts ``connect_error`` rows;
  ``ws.reconnects`` counts ``reconnect`` rows.

Rows of the ``setup`` and ``teardown`` phases (sign-up, login, logout) are left out of run-wide
scopes (name them with ``phase=`` to check them), and rows with error ``cancelled`` (cut by the
end of the run, not by the target) are always left out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass, replace
from typing import TYPE_CHECKING

import polars as pl

from taskforge_perf.errors import ConfigError

if TYPE_CHECKING:
    from .plan import StressPlan

__all__ = [
    "MetricRef",
    "Threshold",
    "ThresholdError",
    "ThresholdWatch",
    "error_rate",
    "evaluate",
    "latency",
    "p50",
    "p90",
    "p95",
    "p99",
    "p999",
    "passed",
    "response_time",
    "rps",
    "task_latency",
    "ws",
]

_STATS = ("p50", "p90", "p95", "p99", "p99.9", "max", "mean")
_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}
_WS = {"ws.dropped", "ws.failed", "ws.lost", "ws.rejected", "ws.reconnects"}
METRICS: tuple[str, ...] = (
    *_STATS,
    *(f"resp_{s}" for s in _STATS),
    "error_rate",
    "rps",
    *(f"task_latency.{s}" for s in _STATS),
    *sorted(_WS),
)
_ALIASES = {
    **{f"latency.{s}": s for s in _STATS},
    **{f"response_time.{s}": f"resp_{s}" for s in _STATS},
    **{f"resp.{s}": f"resp_{s}" for s in _STATS},
    "errors": "error_rate",
}
OPS: tuple[str, ...] = ("<", "<=", ">", ">=", "==")
_NON_LOAD_PHASES = ("setup", "teardown")


class ThresholdError(ConfigError):
    """An invalid threshold; the message names the field and the fix."""


def _unit(metric: str) -> str:
    if metric == "error_rate":
        return "ratio"
    if metric == "rps":
        return "req/s"
    if metric in _WS:
        return "count"
    return "ms"


def _fmt(x: float) -> str:
    return f"{x:.12g}"


@dataclass(frozen=True, slots=True, repr=False)
class Threshold:
    """``metric op value`` over a scope: the whole run, an ``endpoint``, a ``phase`` or both.

    ``abort_on_fail=True`` lets :class:`ThresholdWatch` stop the run as soon as it fails.
    """

    metric: str
    op: str
    value: float
    _: KW_ONLY
    endpoint: str | None = None
    phase: str | None = None
    abort_on_fail: bool = False

    def __post_init__(self) -> None:
        metric = _ALIASES.get(self.metric, self.metric)
        if metric not in METRICS:
            raise ThresholdError(
                f"Threshold metric {self.metric!r} is unknown; use one of {', '.join(METRICS)}"
            )
        object.__setattr__(self, "metric", metric)
        if self.op not in OPS:
            raise ThresholdError(f"Threshold {metric}: op {self.op!r} is unknown; use one of {' '.join(OPS)}")
        v = self.value
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ThresholdError(f"Threshold {metric}: value must be a finite number (got {v!r})")
        object.__setattr__(self, "value", float(v))
        if metric == "error_rate" and not 0 <= v <= 1:
            raise ThresholdError(
                f"Threshold error_rate: value must be a fraction 0..1 (got {v!r});"
                f" write 0.01 or '1%' for one percent"
            )
        for fld in ("endpoint", "phase"):
            s = getattr(self, fld)
            if s is not None and (not isinstance(s, str) or not s.strip()):
                raise ThresholdError(
                    f"Threshold {metric}: {fld} must be a non-empty string or None (got {s!r})"
                )
        if self.endpoint is not None and metric in _WS:
            raise ThresholdError(
                f"Threshold {metric}: endpoint= does not apply to WebSocket counts; drop it (phase= works)"
            )
        if not isinstance(self.abort_on_fail, bool):
            raise ThresholdError(f"Threshold {metric}: abort_on_fail must be True or False")

    @property
    def unit(self) -> str:
        """``"ms"``, ``"ratio"``, ``"req/s"`` or ``"count"``."""
        return _unit(self.metric)

    @property
    def scope(self) -> str:
        """``"run"``, ``"endpoint POST /tasks"``, ``"phase peak"`` or both."""
        parts = []
        if self.endpoint is not None:
            parts.append(f"endpoint {self.endpoint}")
        if self.phase is not None:
            parts.append(f"phase {self.phase}")
        return ", ".join(parts) or "run"

    def check(self, actual: float | None) -> bool:
        """Whether ``actual`` satisfies the threshold (None never does)."""
        if actual is None or (isinstance(actual, float) and math.isnan(actual)):
            return False
        v = self.value
        return {
            "<": actual < v,
            "<=": actual <= v,
            ">": actual > v,
            ">=": actual >= v,
            "==": actual == v,
        }[self.op]

    def __str__(self) -> str:
        args = [a for a in (self.endpoint, f"phase={self.phase}" if self.phase else None) if a]
        scope = f"({', '.join(args)})" if args else ""
        if self.unit == "ms":
            value = f"{_fmt(self.value)}ms"
        elif self.unit == "ratio":
            value = f"{_fmt(self.value * 100)}%"
        else:
            value = _fmt(self.value)
        return f"{self.metric}{scope} {self.op} {value}"

    def __repr__(self) -> str:
        extra = "".join(
            f", {k}={getattr(self, k)!r}" for k in ("endpoint", "phase") if getattr(self, k) is not None
        )
        if self.abort_on_fail:
            extra += ", abort_on_fail=True"
        return f"Threshold({self.metric!r}, {self.op!r}, {self.value!r}{extra})"

    @classmethod
    def parse(cls, text: str, *, abort_on_fail: bool = False) -> Threshold:
        """Parse ``"p95(POST /tasks) < 300ms"``, ``"error_rate(phase=spike) < 1%"``,
        ``"task_latency.p99 < 5s"``, ``"ws.dropped == 0"``, ``"rps >= 100"``.

        Inside the parentheses: an endpoint (or a task type for ``task_latency``) and/or
        ``phase=NAME``. Units: ``us``/``ms``/``s`` for times (default ms), ``%`` for error_rate.
        """
        if not isinstance(text, str):
            raise ThresholdError(f"Threshold.parse expects a string (got {type(text).__name__})")
        m = _PATTERN.match(text)
        if not m:
            raise ThresholdError(
                f"cannot parse threshold {text!r}; write METRIC[(ENDPOINT, "
                "phase=NAME)] OP VALUE[UNIT], e.g. 'p95(POST /tasks) < 300ms'"
            )
        metric = _ALIASES.get(m["metric"], m["metric"])
        endpoint = phase = None
        for arg in (a.strip() for a in (m["args"] or "").split(",")):
            if not arg:
                continue
            key, eq, val = arg.partition("=")
            if eq and key.strip() == "phase":
                phase = val.strip()
            elif eq and key.strip() in ("endpoint", "type", "task_type"):
                endpoint = val.strip()
            elif not eq and endpoint is None:
                endpoint = arg
            else:
                raise ThresholdError(
                    f"threshold {text!r}: cannot read scope {arg!r}; use (ENDPOINT) and/or (phase=NAME)"
                )
        value = float(m["num"])
        unit = (m["unit"] or "").strip()
        kind = _unit(metric) if metric in METRICS else None
        if unit:
            if kind == "ms" and unit in _TIME_UNITS:
                value *= _TIME_UNITS[unit]
            elif kind == "ratio" and unit == "%":
                value /= 100
            elif kind == "req/s" and unit in ("/s", "rps", "req/s"):
                pass
            else:
                fix = {
                    "ms": "use us, ms or s",
                    "ratio": "write a fraction (0.01) or a percent (1%)",
                    "req/s": "write a number of requests/s",
                    "count": "write a plain count",
                }
                raise ThresholdError(
                    f"threshold {text!r}: unit {unit!r} does not apply to "
                    f"{metric}; {fix.get(kind or '', 'drop the unit')}"
                )
        return cls(metric, m["op"], value, endpoint=endpoint, phase=phase, abort_on_fail=abort_on_fail)


_TIME_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}
_PATTERN = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][\w.]*)\s*(?:\((?P<args>[^)]*)\))?\s*(?P<op><=|>=|==|<|>)\s*"
    r"(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>[A-Za-zµ%/]*)\s*$"
)


# -- builder objects ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)
class MetricRef:
    """A metric in a scope, waiting for a comparison: ``p95("POST /tasks") < 300``."""

    metric: str
    endpoint: str | None = None
    phase: str | None = None
    abort_on_fail: bool = False

    def _t(self, op: str, value: float) -> Threshold:
        return Threshold(
            self.metric,
            op,
            value,
            endpoint=self.endpoint,
            phase=self.phase,
            abort_on_fail=self.abort_on_fail,
        )

    def __lt__(self, value: float) -> Threshold:
        return self._t("<", value)

    def __le__(self, value: float) -> Threshold:
        return self._t("<=", value)

    def __gt__(self, value: float) -> Threshold:
        return self._t(">", value)

    def __ge__(self, value: float) -> Threshold:
        return self._t(">=", value)

    def __eq__(self, value: object) -> Threshold:  # type: ignore[override]
        return self._t("==", value)  # type: ignore[arg-type]

    __hash__ = None  # type: ignore[assignment]


def latency(
    stat: str = "p95",
    endpoint: str | None = None,
    *,
    phase: str | None = None,
    abort_on_fail: bool = False,
) -> MetricRef:
    """Latency (``t_end - t_start``, ms): ``latency("max", "GET /health") < 1000``."""
    if stat not in _STATS:
        raise ThresholdError(f"latency: stat {stat!r} is unknown; use one of {', '.join(_STATS)}")
    return MetricRef(stat, endpoint, phase, abort_on_fail)


def response_time(
    stat: str = "p95",
    endpoint: str | None = None,
    *,
    phase: str | None = None,
    abort_on_fail: bool = False,
) -> MetricRef:
    """Response time (``t_end - t_intended``, ms): ``response_time("p99") < 500``."""
    if stat not in _STATS:
        raise ThresholdError(f"response_time: stat {stat!r} is unknown; use one of {', '.join(_STATS)}")
    return MetricRef(f"resp_{stat}", endpoint, phase, abort_on_fail)


def p50(endpoint: str | None = None, **kw: object) -> MetricRef:
    """Median latency, ms."""
    return latency("p50", endpoint, **kw)  # type: ignore[arg-type]


def p90(endpoint: str | None = None, **kw: object) -> MetricRef:
    """90th-percentile latency, ms."""
    return latency("p90", endpoint, **kw)  # type: ignore[arg-type]


def p95(endpoint: str | None = None, **kw: object) -> MetricRef:
    """95th-percentile latency, ms: ``p95("POST /tasks") < 300``."""
    return latency("p95", endpoint, **kw)  # type: ignore[arg-type]


def p99(endpoint: str | None = None, **kw: object) -> MetricRef:
    """99th-percentile latency, ms."""
    return latency("p99", endpoint, **kw)  # type: ignore[arg-type]


def p999(endpoint: str | None = None, **kw: object) -> MetricRef:
    """99.9th-percentile latency, ms."""
    return latency("p99.9", endpoint, **kw)  # type: ignore[arg-type]


def error_rate(
    endpoint: str | None = None, *, phase: str | None = None, abort_on_fail: bool = False
) -> MetricRef:
    """Failed fraction 0..1: ``error_rate() < 0.01``."""
    return MetricRef("error_rate", endpoint, phase, abort_on_fail)


def rps(endpoint: str | None = None, *, phase: str | None = None, abort_on_fail: bool = False) -> MetricRef:
    """Requests per second: ``rps(phase="peak") >= 100``."""
    return MetricRef("rps", endpoint, phase, abort_on_fail)


def task_latency(
    stat: str = "p95",
    task_type: str | None = None,
    *,
    phase: str | None = None,
    abort_on_fail: bool = False,
) -> MetricRef:
    """Task created -> first completed message, ms: ``task_latency("p99") < 5000``."""
    if stat not in _STATS:
        raise ThresholdError(f"task_latency: stat {stat!r} is unknown; use one of {', '.join(_STATS)}")
    return MetricRef(f"task_latency.{stat}", task_type, phase, abort_on_fail)


def ws(count: str, *, phase: str | None = None, abort_on_fail: bool = False) -> MetricRef:
    """A WebSocket count: ``ws("dropped") == 0`` (dropped, failed, lost, rejected, reconnects)."""
    name = f"ws.{count}"
    if name not in _WS:
        raise ThresholdError(
            f"ws: count {count!r} is unknown; use one of {', '.join(sorted(n[3:] for n in _WS))}"
        )
    return MetricRef(name, None, phase, abort_on_fail)


# -- evaluation ---------------------------------------------------------------------------
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


def _scoped_http(events: pl.DataFrame, th: Threshold) -> pl.DataFrame:
    cond = pl.col("error").is_null() | (pl.col("error").cast(pl.String) != "cancelled")
    if th.phase is not None:
        cond &= pl.col("phase").cast(pl.String) == th.phase
    else:
        cond &= ~pl.col("phase").cast(pl.String).is_in(_NON_LOAD_PHASES).fill_null(False)
    if th.endpoint is not None:
        cond &= pl.col("endpoint").cast(pl.String) == th.endpoint
    return events.filter(cond)


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
    th: Threshold, events: pl.DataFrame, ws_events: pl.DataFrame | None, duration_s: float | None
) -> tuple[float | None, int, str | None]:
    """(actual, rows in scope, note) for one threshold."""
    m = th.metric
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
    rows = _scoped_http(events, th)
    if rows.height == 0:
        return None, 0, "no requests in scope"
    if m == "error_rate":
        return rows["error"].is_not_null().mean(), rows.height, None  # type: ignore[return-value]
    if m == "rps":
        if duration_s is None:
            span = rows.select(pl.col("t_end").max() - pl.col("t_start").min()).item()
            duration_s = (span or 0) / 1e9
        if not duration_s or duration_s <= 0:
            return None, rows.height, "duration unknown; pass duration_s="
        return rows.height / duration_s, rows.height, None
    start = "t_intended" if m.startswith("resp_") else "t_start"
    stat = m.removeprefix("resp_")
    ms = (pl.col("t_end") - pl.col(start)).cast(pl.Float64) / 1e6
    return rows.select(_stat_expr(stat, ms)).item(), rows.height, None


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


def _coerce(thresholds: Iterable[Threshold | str] | Threshold | str) -> list[Threshold]:
    if isinstance(thresholds, Threshold | str):
        thresholds = [thresholds]
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
) -> pl.DataFrame:
    """One row per threshold: threshold, metric, scope, actual, op, limit, unit, passed, rows,
    abort_on_fail, note. A scope with no rows has a null actual, fails, and says why in ``note``.

    ``duration_s`` is the run's load duration for run-wide ``rps``; with ``plan`` given, a
    phase-scoped ``rps`` divides by the phase's planned duration.

    >>> import polars as pl
    >>> ev = pl.DataFrame({"t_intended": [0, 0], "t_start": [0, 0], "t_end": [10**8, 3 * 10**8],
    ...                    "error": [None, None], "endpoint": ["GET /health"] * 2,
    ...                    "phase": ["load"] * 2})
    >>> evaluate(["max < 200ms"], ev)["passed"].to_list()
    [False]
    """
    rows = []
    for th in _coerce(thresholds):
        actual, n, note = _measure(th, events, ws_events, _duration_for(th, duration_s, plan))
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

    def check(
        self,
        events_so_far: pl.DataFrame,
        ws_so_far: pl.DataFrame | None = None,
        *,
        elapsed_s: float | None = None,
        plan: StressPlan | None = None,
    ) -> Threshold | None:
        """The first breached abort-on-fail threshold, or None. ``elapsed_s`` is the load time
        so far (for run-wide ``rps``)."""
        if self.breached is not None:
            return self.breached
        for th in self.thresholds:
            duration = elapsed_s if th.phase is None else _duration_for(th, None, plan)
            actual, n, note = _measure(th, events_so_far, ws_so_far, duration)
            if actual is None or (n < self.min_rows and th.metric not in _WS):
                continue
            if not th.check(actual):
                self.breached = th
                self.breach = {
                    "threshold": str(th),
                    "actual": actual,
                    "limit": th.value,
                    "rows": n,
                    "note": note,
                }
                return th
        return None


def rescope(thresholds: Sequence[Threshold], phase: str) -> list[Threshold]:
    """The thresholds that apply to ``phase`` (run-wide ones and those scoped to it), all
    scoped to ``phase``; used to judge a run phase by phase."""
    return [replace(t, phase=phase) for t in thresholds if t.phase in (None, phase)]
