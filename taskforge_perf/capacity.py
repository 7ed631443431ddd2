"""``find_capacity``: the highest open-model rate at which a target holds an SLO.

The controller runs one short open-model step per rate with the tester it is given. It doubles
the rate (``growth``) while the SLO holds, and once a step breaks it, bisects between the last
rate that held and the first that broke until they are within ``precision`` of each other. Each
step is judged with the thresholds machinery (``Threshold.parse`` + ``Run.evaluate``) and must
be long enough to be significant: for an SLO on the q-th percentile, at least ``20 / (1 - q)``
answered requests (the order-statistic rule ``n (1 - q) >= 20``: 400 for p95, 2,000 for p99), so
the step lasts ``max(min_step_s, 1.2 * n / rate)`` seconds. A step also fails when its
steady-state throughput (answers completed in the second half of the step, per second) is below
``keep_up`` (95%) of the offered rate: above capacity the target answers at its own rate while its
queue grows, which a short step's percentiles alone can miss (a 6% overload adds only ~0.15 s of
queueing over a 2.3 s step).

When a step finds the *generator* saturated (``run.generator_saturated`` with a ``"tester"``
cause, see ``engine.health``) the search stops at once and reports the generator's limit, not
a capacity: the tester cannot tell the target's limit from its own beyond that rate.
"""

from __future__ import annotations

import builtins
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from taskforge_perf.errors import ConfigError
from taskforge_perf.schema import answered_expr, sent_expr
from taskforge_perf.thresholds import Threshold

#: Order-statistic rule: a percentile q is judged on at least MIN_TAIL / (1 - q) answered rows.
MIN_TAIL = 20

STEPS_SCHEMA: dict[str, Any] = {
    "step": pl.Int64,
    "rate": pl.Float64,
    "duration_s": pl.Float64,
    "sent": pl.Int64,
    "answered": pl.Int64,
    "min_answered": pl.Int64,
    "achieved_rps": pl.Float64,  # steady state: answers in the step's second half, per second
    "p50_ms": pl.Float64,
    "p95_ms": pl.Float64,
    "p99_ms": pl.Float64,
    "error_rate": pl.Float64,
    "passed": pl.Boolean,
    "reason": pl.String,
    "generator_saturated": pl.Boolean,
    "wall_s": pl.Float64,
}


@dataclass(frozen=True, kw_only=True)
class CapacityResult:
    """What ``find_capacity`` found; ``.steps`` (a frame, one row per step) and ``.chart()``.

    ``rate`` is the highest rate that held the SLO (None when even the lowest failed, or when the
    generator was the limit); the true capacity lies in ``interval`` = (last rate that held,
    first that broke; None when no step broke). ``knee``: the rate where the p95 curve bends most.
    ``generator_limit``: the rate at which the tester saturated, when it did (then ``rate`` is None).
    """

    rate: float | None
    interval: tuple[float | None, float | None]
    knee: float | None
    slo: tuple[str, ...]
    steps: pl.DataFrame
    generator_limit: float | None
    stopped: str
    wall_s: float

    @property
    def generator_limited(self) -> bool:
        """True when the search stopped because the tester itself saturated."""
        return self.generator_limit is not None

    def __repr__(self) -> str:
        slo = ", ".join(self.slo)
        lo, hi = self.interval
        if self.generator_limit is not None:
            head = f"generator limit at {self.generator_limit:g}/s (not a capacity of the target)"
        elif self.rate is None:
            head = "no rate held the SLO"
        else:
            head = f"rate={self.rate:g}/s holds [{slo}]"
        span = f"[{_fmt(lo)}, {_fmt(hi)}]/s"
        knee = f"{self.knee:g}/s" if self.knee is not None else "-"
        return (
            f"CapacityResult({head}; interval={span}, knee={knee}, "
            f"{self.steps.height} steps in {self.wall_s:.0f} s; {self.stopped})"
        )

    def chart(self) -> Any:
        """p95 against the offered rate, steps coloured by the SLO (Altair, returned)."""
        from taskforge_perf.group_charts import capacity

        bound = [t.value for t in map(Threshold.parse, self.slo) if t.metric == "p95"]
        from taskforge_perf.chart_style import finish

        return finish(capacity(self.steps, slo_ms=bound[0] if bound else None, knee=self.knee))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the steps as a list of dicts)."""
        return {
            "rate": self.rate,
            "interval": list(self.interval),
            "knee": self.knee,
            "slo": list(self.slo),
            "generator_limit": self.generator_limit,
            "stopped": self.stopped,
            "wall_s": self.wall_s,
            "steps": self.steps.to_dicts(),
        }


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def min_answered(slo: Sequence[Threshold]) -> int:
    """Answered requests a step needs for the SLO's highest percentile (``n (1 - q) >= 20``)."""
    need = 0
    for t in slo:
        m = re.fullmatch(r"(?:resp_)?p(\d+(?:\.\d+)?)", t.metric)
        if m is None:
            continue
        digits = m.group(1)
        q = float(digits) / 100 if "." in digits or len(digits) <= 2 else float("0." + digits)
        need = max(need, math.ceil(MIN_TAIL / (1 - q) - 1e-9))
    return need


def knee_of(rates: Sequence[float], p95: Sequence[float]) -> float | None:
    """The rate where a rising latency curve bends most: the point furthest below the chord from
    the first to the last point, both axes scaled to 0..1 (Kneedle); None below 3 points."""
    pts = sorted((r, y) for r, y in zip(rates, p95, strict=True) if y is not None and math.isfinite(y))
    if len(pts) < 3:
        return None
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    if x1 <= x0 or y1 <= y0:
        return None
    best, where = 0.0, None
    for x, y in pts[1:-1]:
        d = (x - x0) / (x1 - x0) - (y - y0) / (y1 - y0)
        if d > best:
            best, where = d, x
    return where


def _check(name: str, v: Any, lo: float, *, strict: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ConfigError(f"find_capacity: {name} must be a finite number (got {v!r})")
    if v < lo or (strict and v == lo):
        raise ConfigError(f"find_capacity: {name} must be {'>' if strict else '>='} {lo:g} (got {v!r})")
    return float(v)


async def find_capacity(
    tester: Any,
    slo: Sequence[str | Threshold] | str = ("p95 < 300ms", "error_rate < 1%"),
    *,
    start: float = 50.0,
    max: float = 5000.0,  # noqa: A002 - the issue's name for it
    step_s: float | None = None,
    min_step_s: float = 2.0,
    max_step_s: float = 60.0,
    growth: float = 2.0,
    precision: float = 0.05,
    keep_up: float = 0.95,
    max_steps: int = 30,
    drain_grace: float = 2.0,
    name: str = "capacity",
) -> CapacityResult:
    """Find the highest open-model rate at which ``tester``'s target holds ``slo``.

    >>> result = await tfp.find_capacity(tester, ["p95 < 300ms", "error_rate < 1%"])  # doctest: +SKIP
    >>> result.rate, result.interval; result.chart()                                  # doctest: +SKIP

    ``step_s`` fixes each step's length (still at least long enough for the SLO's percentile);
    otherwise a step lasts ``max(min_step_s, 1.2 * n / rate)`` capped at ``max_step_s``. Requests
    in flight at a step's end get ``drain_grace`` seconds. See the module docstring.
    """
    texts = (slo,) if isinstance(slo, str | Threshold) else tuple(slo)
    if not texts:
        raise ConfigError("find_capacity: slo needs at least one threshold, e.g. ['p95 < 300ms']")
    checks = tuple(t if isinstance(t, Threshold) else Threshold.parse(t) for t in texts)
    lo_rate = _check("start", start, 0)
    hi_rate = _check("max", max, lo_rate, strict=False)
    _check("growth", growth, 1)
    _check("precision", precision, 0)
    _check("keep_up", keep_up, 0, strict=False)
    _check("min_step_s", min_step_s, 0)
    _check("max_step_s", max_step_s, min_step_s, strict=False)
    if step_s is not None:
        _check("step_s", step_s, 0)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ConfigError(f"find_capacity: max_steps must be an integer >= 1 (got {max_steps!r})")
    need = min_answered(checks)
    rows: list[dict[str, Any]] = []
    passed_at: float | None = None
    failed_at: float | None = None
    limit: float | None = None
    stopped = "max_steps reached"
    rate = lo_rate
    t0 = time.monotonic()
    saved_grace = tester.drain_grace
    tester.drain_grace = drain_grace
    try:
        while len(rows) < max_steps:
            secs = step_s if step_s is not None else min_step_s
            secs = min(builtins.max(secs, 1.2 * need / rate), max_step_s)
            row = await _step(tester, rate, secs, checks, need, keep_up, len(rows) + 1, name)
            rows.append(row)
            if row["generator_saturated"]:
                limit, stopped = rate, f"the generator saturated at {rate:g}/s"
                break
            if row["passed"]:
                passed_at = rate if passed_at is None else builtins.max(passed_at, rate)
            else:
                failed_at = rate if failed_at is None else min(failed_at, rate)
            nxt = _next_rate(passed_at, failed_at, growth, hi_rate, lo_rate, precision)
            if isinstance(nxt, str):
                stopped = nxt
                break
            rate = nxt
    finally:
        tester.drain_grace = saved_grace
    steps = pl.DataFrame(rows, schema=STEPS_SCHEMA)
    knee = knee_of(steps["rate"].to_list(), steps["p95_ms"].to_list()) if steps.height else None
    return CapacityResult(
        rate=None if limit is not None else passed_at,
        interval=(passed_at, failed_at),
        knee=knee,
        slo=tuple(str(t) for t in checks),
        steps=steps,
        generator_limit=limit,
        stopped=stopped,
        wall_s=time.monotonic() - t0,
    )


def _next_rate(
    passed_at: float | None,
    failed_at: float | None,
    growth: float,
    top: float,
    bottom: float,
    precision: float,
) -> float | str:
    """The next rate to try, or why the search is over."""
    if failed_at is None:  # still climbing
        assert passed_at is not None
        if passed_at >= top:
            return f"held the SLO up to max={top:g}/s"
        return min(passed_at * growth, top)
    if passed_at is None:  # even the lowest rate tried broke the SLO: go down
        lower = failed_at / growth
        if lower < bottom / growth**3:
            return f"no rate down to {failed_at:g}/s held the SLO"
        return lower
    if failed_at - passed_at <= precision * passed_at:
        return f"converged within {precision:.0%}"
    return (passed_at + failed_at) / 2


async def _step(
    tester: Any,
    rate: float,
    secs: float,
    checks: Sequence[Threshold],
    need: int,
    keep_up: float,
    number: int,
    name: str,
) -> dict[str, Any]:
    """Run one open-model step and judge it."""
    began = time.monotonic()
    run = await tester.run(duration=secs, rate=rate, name=f"{name} step {number} ({rate:g}/s)")
    ev = run.load_events()
    answered = ev.filter(answered_expr())
    sent = int(ev.filter(sent_expr()).height)
    lat = (pl.col("t_end") - pl.col("t_start")) / 1e6
    q = answered.select(
        lat.quantile(0.5, "linear").alias("p50"),
        lat.quantile(0.95, "linear").alias("p95"),
        lat.quantile(0.99, "linear").alias("p99"),
    ).row(0)
    errors = ev.filter(sent_expr() & pl.col("error").is_not_null())
    duration = run.duration_s or secs
    # Steady-state throughput: answers completed in the second half of the step, per second. Below
    # capacity it equals the offered rate; above, the target's rate (its queue grows meanwhile).
    t0 = int(run.meta.get("load_start_ns") or 0)
    half, end = t0 + int(secs * 5e8), t0 + int(secs * 1e9)
    done = answered.filter((pl.col("t_end") > half) & (pl.col("t_end") <= end)).height
    achieved = done / (secs / 2)
    results = run.evaluate(list(checks))
    reasons = [f"{r['threshold']} (actual {r['actual']:.4g})" for r in results.to_dicts() if not r["passed"]]
    if need and answered.height < need:
        reasons.append(f"only {answered.height} answered, {need} needed to judge the percentile")
    if achieved < keep_up * rate:
        reasons.append(f"throughput {achieved:.1f}/s < {keep_up:.0%} of {rate:g}/s offered")
    gen = run.meta.get("generator") or {}
    saturated = bool(gen.get("saturated")) and "tester" in (gen.get("causes") or ())
    if saturated:
        reasons.append("generator saturated: " + "; ".join(gen.get("reasons") or ()))
    return {
        "step": number,
        "rate": float(rate),
        "duration_s": float(duration),
        "sent": sent,
        "answered": answered.height,
        "min_answered": need,
        "achieved_rps": achieved,
        "p50_ms": q[0],
        "p95_ms": q[1],
        "p99_ms": q[2],
        "error_rate": errors.height / sent if sent else None,
        "passed": not reasons,
        "reason": "; ".join(reasons) if reasons else None,
        "generator_saturated": saturated,
        "wall_s": time.monotonic() - began,
    }
