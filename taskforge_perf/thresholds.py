"""Pass/fail thresholds as data (like k6); ``threshold_eval`` evaluates them over a run. Pure.

Build them with the small factories or parse them from text:

>>> p95("POST /tasks") < 300
Threshold('p95', '<', 300.0, endpoint='POST /tasks')
>>> Threshold.parse("error_rate < 1%")
Threshold('error_rate', '<', 0.01)
>>> Threshold.parse("task_latency.p99 < 5s").value
5000.0

Units: latency and response-time metrics (``p50`` ... ``max``, ``mean``, ``resp_*``) and
``task_latency.*`` are in milliseconds; ``error_rate`` is a fraction 0..1 (in text: a percent
``1%`` or a fraction below 1 ``0.01``; a bare ``1`` is refused as ambiguous); ``rps`` is requests/s;
``ws.*`` are counts of WebSocket rows.

What the metrics read:
- latency = ``t_end - t_start``; response time (``resp_*``) = ``t_end - t_intended`` (includes the
  time a request waited behind the schedule: coordinated omission stays visible);
- latency and response-time statistics cover the answered rows (any status), as in ``summary()``;
- ``error_rate`` = target-side errors (4xx/5xx and target failures) / sent rows;
- ``rps`` = answered rows / duration (``duration_s``, else the plan's total duration, else the
  span of the rows); for a phase with the plan known, ``by_phase``'s achieved throughput;
- ``task_latency.<stat>`` = ``since_created_ns`` of the first ``completed`` message per task;
  ``endpoint=`` scopes it to a task type (``"generate-pdf"``), ``phase=`` to the phase of the HTTP
  row that created the task (else of the message);
- ``ws.dropped`` / ``ws.rejected`` / ``ws.lost`` count rows whose error is ``dropped`` /
  ``rejected`` / ``lost_subscription``; ``ws.failed`` counts ``connect_error`` rows;
  ``ws.reconnects`` counts ``reconnect`` rows.
- ``generator.lag_p99`` / ``generator.lateness_p99`` (ms) and ``generator.cpu_max`` (0..1): the
  tester's own health (``meta["generator"]``, see ``engine.health``): ``generator.lag_p99 < 5ms``.

Rows of the ``setup`` and ``teardown`` phases (sign-up, login, logout) are left out of run-wide
scopes (name them with ``phase=`` to check them), and tester-side rows (``dropped``,
``cancelled``, ``auth``, ``client``: not the target's doing) are always left out.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING

from taskforge_perf.threshold_text import (
    HEAD,
    TAIL,
    TIME_UNITS,
    ThresholdError,
    number_text,
    quote_name,
    scan_scope,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "MetricRef",
    "Threshold",
    "ThresholdError",
    "error_rate",
    "latency",
    "p50",
    "p90",
    "p95",
    "p99",
    "p999",
    "response_time",
    "rps",
    "task_latency",
    "ws",
]

_STATS = ("p50", "p90", "p95", "p99", "p99.9", "max", "mean")
_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}
_WS = {"ws.dropped", "ws.failed", "ws.lost", "ws.rejected", "ws.reconnects"}
#: The generator's own health (engine.health, ``meta["generator"]``), run-wide only.
_GEN = {
    "generator.lag_p99": "lag_p99_ms",
    "generator.lateness_p99": "lateness_p99_ms",
    "generator.cpu_max": "cpu_max",
}
METRICS: tuple[str, ...] = (
    *_STATS,
    *(f"resp_{s}" for s in _STATS),
    "error_rate",
    "rps",
    *(f"task_latency.{s}" for s in _STATS),
    *sorted(_WS),
    *_GEN,
)
_ALIASES = {
    **{f"latency.{s}": s for s in _STATS},
    **{f"response_time.{s}": f"resp_{s}" for s in _STATS},
    **{f"resp.{s}": f"resp_{s}" for s in _STATS},
    "errors": "error_rate",
}
OPS: tuple[str, ...] = ("<", "<=", ">", ">=", "==")
_NON_LOAD_PHASES = ("setup", "teardown")


def _unit(metric: str) -> str:
    if metric in ("error_rate", "generator.cpu_max"):
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
        if metric in _GEN and (self.endpoint is not None or self.phase is not None):
            raise ThresholdError(
                f"Threshold {metric}: the generator's health is run-wide; drop endpoint=/phase="
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
        """The threshold as text that :meth:`parse` reads back to an equal threshold.

        Names holding ``( ) , = " '`` (``StressPlan.steps`` phases such as ``step 1 (100/s)``)
        or edge spaces are written as double-quoted strings.
        """
        args = []
        if self.endpoint is not None:
            args.append(quote_name(self.endpoint))
        if self.phase is not None:
            args.append(f"phase={quote_name(self.phase)}")
        scope = f"({', '.join(args)})" if args else ""
        return f"{self.metric}{scope} {self.op} {_value_text(self.metric, self.value)}"

    def __repr__(self) -> str:
        extra = "".join(
            f", {k}={getattr(self, k)!r}" for k in ("endpoint", "phase") if getattr(self, k) is not None
        )
        if self.abort_on_fail:
            extra += ", abort_on_fail=True"
        return f"Threshold({self.metric!r}, {self.op!r}, {self.value!r}{extra})"

    @classmethod
    def load_toml(cls, path: str | Path) -> list[Threshold]:
        """Load thresholds from a TOML file: ``thresholds = ["p95 < 300ms", ...]`` and/or
        ``[[threshold]]`` tables with ``expr`` and ``abort_on_fail``; errors name the file, the
        line and the field. See ``taskforge_perf.toml_io`` and ``examples/thresholds.toml``."""
        from taskforge_perf.toml_io import thresholds_from_toml

        return thresholds_from_toml(path)

    @classmethod
    def parse(cls, text: str, *, abort_on_fail: bool = False) -> Threshold:
        """Parse ``"p95(POST /tasks) < 300ms"``, ``"error_rate(phase=spike) < 1%"``,
        ``"task_latency.p99 < 5s"``, ``"ws.dropped == 0"``, ``"rps >= 100"``.

        Inside the parentheses: an endpoint (or a task type for ``task_latency``) and/or
        ``phase=NAME``; a name holding ``,`` ``=`` or unbalanced parentheses is written in
        quotes: ``p95(phase="step 1 (100/s)") < 300ms``. Units: ``us``/``ms``/``s`` for times
        (default ms). ``error_rate`` takes a percent (``1%``) or a fraction below 1 (``0.01``);
        a bare ``1`` or more is refused as ambiguous (``error_rate < 1`` meant 100%).
        """
        if not isinstance(text, str):
            raise ThresholdError(f"Threshold.parse expects a string (got {type(text).__name__})")
        hint = (
            "write METRIC[(ENDPOINT, phase=NAME)] OP VALUE[UNIT], e.g. 'p95(POST /tasks) < 300ms'; "
            'quote names holding , = or parentheses: p95(phase="step 1 (100/s)") < 300ms'
        )
        head = HEAD.match(text)
        if not head:
            raise ThresholdError(f"cannot parse threshold {text!r}; {hint}")
        pos = head.end()
        args: list[tuple[str | None, str]] = []
        if pos < len(text) and text[pos] == "(":
            args, pos = scan_scope(text, pos + 1, hint)
        m = TAIL.match(text, pos)
        if not m:
            raise ThresholdError(f"cannot parse threshold {text!r}; {hint}")
        metric = _ALIASES.get(head["metric"], head["metric"])
        if metric not in METRICS:
            raise ThresholdError(
                f"threshold {text!r}: metric {head['metric']!r} is unknown; use one of {', '.join(METRICS)}"
            )
        endpoint = phase = None
        for key, val in args:
            if key == "phase" and phase is None:
                phase = val
            elif key in ("endpoint", "type", "task_type", None) and endpoint is None:
                endpoint = val
            else:
                shown = val if key is None else f"{key}={val}"
                raise ThresholdError(
                    f"threshold {text!r}: cannot read scope {shown!r}; use (ENDPOINT) and/or "
                    "(phase=NAME), quoting names that hold , = or parentheses"
                )
        value = float(m["num"])
        unit = (m["unit"] or "").strip()
        kind = _unit(metric)
        if unit:
            if kind == "ms" and unit in TIME_UNITS:
                value *= TIME_UNITS[unit]
            elif kind == "ratio" and unit == "%":
                value /= 100
            elif kind == "req/s" and unit in ("/s", "rps", "req/s"):
                pass
            else:
                fix = {
                    "ms": "use us, ms or s",
                    "ratio": "write a percent (1%) or a fraction below 1 (0.01)",
                    "req/s": "write a number of requests/s",
                    "count": "write a plain count",
                }
                raise ThresholdError(
                    f"threshold {text!r}: unit {unit!r} does not apply to "
                    f"{metric}; {fix.get(kind, 'drop the unit')}"
                )
        elif kind == "ratio" and value >= 1:
            raise ThresholdError(
                f"threshold {text!r}: {metric} {m['num']} is ambiguous (percent or fraction?); "
                f"write a percent such as '{m['num']}%', or a fraction below 1 such as 0.01"
            )
        return cls(metric, m["op"], value, endpoint=endpoint, phase=phase, abort_on_fail=abort_on_fail)


def _value_text(metric: str, value: float) -> str:
    """A value with its unit, written so that :meth:`Threshold.parse` gives back the same float."""
    unit = _unit(metric)
    if unit == "ms":
        return f"{number_text(value)}ms"
    if unit == "ratio":
        pct = number_text(value * 100)
        if float(pct) / 100 == value:
            return f"{pct}%"
        return repr(value)  # a fraction below 1 (error_rate is 0..1): exact, and parse reads it
    return number_text(value)


# -- builder objects ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)
class MetricRef:
    """A metric in a scope, waiting for a comparison: ``p95("POST /tasks") < 300``."""

    metric: str
    endpoint: str | None = None
    phase: str | None = None
    abort_on_fail: bool = False

    def _t(self, op: str, value: float) -> Threshold:
        if self.metric == "error_rate" and value == 1 and not isinstance(value, bool):
            raise ThresholdError(
                "error_rate() compares with a fraction 0..1, so 1 means 100%; write 0.01 for one "
                "percent (or Threshold.parse('error_rate < 1%'))"
            )
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


def _check_stat(builder: str, stat: str) -> None:
    if stat not in _STATS:
        raise ThresholdError(f"{builder}: stat {stat!r} is unknown; use one of {', '.join(_STATS)}")


def latency(
    stat: str = "p95",
    endpoint: str | None = None,
    *,
    phase: str | None = None,
    abort_on_fail: bool = False,
) -> MetricRef:
    """Latency (``t_end - t_start``, ms): ``latency("max", "GET /health") < 1000``."""
    _check_stat("latency", stat)
    return MetricRef(stat, endpoint, phase, abort_on_fail)


def response_time(
    stat: str = "p95",
    endpoint: str | None = None,
    *,
    phase: str | None = None,
    abort_on_fail: bool = False,
) -> MetricRef:
    """Response time (``t_end - t_intended``, ms): ``response_time("p99") < 500``."""
    _check_stat("response_time", stat)
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
    _check_stat("task_latency", stat)
    return MetricRef(f"task_latency.{stat}", task_type, phase, abort_on_fail)


def ws(count: str, *, phase: str | None = None, abort_on_fail: bool = False) -> MetricRef:
    """A WebSocket count: ``ws("dropped") == 0`` (dropped, failed, lost, rejected, reconnects)."""
    name = f"ws.{count}"
    if name not in _WS:
        raise ThresholdError(
            f"ws: count {count!r} is unknown; use one of {', '.join(sorted(n[3:] for n in _WS))}"
        )
    return MetricRef(name, None, phase, abort_on_fail)
