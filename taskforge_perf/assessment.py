"""The stress assessment (the seed's StressTester report), computed from a run's frames. Pure.

Per phase: throughput asked vs achieved, latency percentiles, error rate, WebSocket stability,
the seed's grades, and the breaking point: the first phase where a threshold fails on that phase's
rows or the achieved throughput falls more than 5% below the asked one.

>>> grade(0.002, 850.0, 120.0)
{'error_rate': 'excellent', 'latency': 'excellent', 'throughput': 'excellent'}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from .plan import PlanError, StressPlan
from .threshold_eval import _coerce, evaluate, rescope
from .thresholds import Threshold

__all__ = ["DEFAULT_GRADES", "Grades", "assess", "breaking_point", "grade", "report_json"]

#: Achieved throughput more than this fraction below the asked one marks the breaking point.
SHORTFALL = 0.05
_SECRET_WORDS = ("password", "token", "secret", "authorization", "cookie")


@dataclass(frozen=True, slots=True, kw_only=True)
class Grades:
    """Grade limits; the defaults are the seed's. Replace with ``dataclasses.replace``.

    Error rate below ``error_excellent`` is "excellent", below ``error_good`` "good", else
    "needs improvement"; max latency (ms) below ``latency_excellent_ms`` "excellent", below
    ``latency_acceptable_ms`` "acceptable", else "slow"; throughput (req/s) above
    ``rps_excellent`` "excellent", above ``rps_good`` "good", else "low".
    """

    error_excellent: float = 0.01
    error_good: float = 0.05
    latency_excellent_ms: float = 1000.0
    latency_acceptable_ms: float = 5000.0
    rps_excellent: float = 100.0
    rps_good: float = 50.0

    def __post_init__(self) -> None:
        for a, b in (
            ("error_excellent", "error_good"),
            ("latency_excellent_ms", "latency_acceptable_ms"),
            ("rps_good", "rps_excellent"),
        ):
            va, vb = getattr(self, a), getattr(self, b)
            for name, v in ((a, va), (b, vb)):
                if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
                    raise ValueError(f"Grades.{name} must be a number >= 0 (got {v!r})")
            if va > vb:
                raise ValueError(f"Grades.{a} ({va}) must be <= Grades.{b} ({vb}); swap them")


DEFAULT_GRADES = Grades()


def _present(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def grade(
    error_rate: float | None,
    max_latency_ms: float | None,
    rps: float | None,
    grades: Grades = DEFAULT_GRADES,
) -> dict[str, str | None]:
    """The seed's three grades; a missing (None or NaN) input gives a None grade.

    >>> grade(0.03, 6000, 20)
    {'error_rate': 'good', 'latency': 'slow', 'throughput': 'low'}
    """
    g = grades
    err, lat, thr = _present(error_rate), _present(max_latency_ms), _present(rps)
    out: dict[str, str | None] = {"error_rate": None, "latency": None, "throughput": None}
    if err is not None:
        out["error_rate"] = (
            "excellent" if err < g.error_excellent
            else "good" if err < g.error_good
            else "needs improvement"
        )  # fmt: skip
    if lat is not None:
        out["latency"] = (
            "excellent" if lat < g.latency_excellent_ms
            else "acceptable" if lat < g.latency_acceptable_ms
            else "slow"
        )  # fmt: skip
    if thr is not None:
        out["throughput"] = (
            "excellent" if thr > g.rps_excellent
            else "good" if thr > g.rps_good
            else "low"
        )  # fmt: skip
    return out


def _plan_offset_ns(plan: StressPlan, events: pl.DataFrame, plan_start_s: float | None) -> int:
    """Run time (ns) at which the plan started: given, or inferred from the earliest intended
    start of a row of the earliest phase that has rows."""
    if plan_start_s is not None:
        return int(round(plan_start_s * 1e9))
    if events.height == 0:
        return 0
    firsts = events.group_by(pl.col("phase").cast(pl.String)).agg(pl.col("t_intended").min())
    by_phase = dict(zip(firsts["phase"].to_list(), firsts["t_intended"].to_list(), strict=True))
    for i, ph in enumerate(plan.phases):
        t = by_phase.get(ph.name)
        if t is not None:
            return max(0, int(t - round(plan.boundaries[i] * 1e9)))
    return 0


def assess(
    plan: StressPlan,
    events: pl.DataFrame,
    ws_events: pl.DataFrame | None = None,
    thresholds: Iterable[Threshold | str] = (),
    *,
    phase_stats: Mapping[str, Mapping[str, float]] | None = None,
    plan_start_s: float | None = None,
    grades: Grades = DEFAULT_GRADES,
) -> pl.DataFrame:
    """One row per plan phase, in plan order.

    Columns: phase, phase_index, model, start_s, duration_s, asked_rps (open: the rate, or a
    ramp's mean; closed: null), concurrency (closed: mean level), requests, achieved_rps, errors,
    error_rate, p50_ms, p95_ms, p99_ms, max_ms (latency), resp_p99_ms (response time, which
    includes schedule lateness), ws_opened / ws_dropped (with ``ws_events``), one column per key
    of ``phase_stats`` (the engine's per-phase counters: planned, late, cap_hits, ...),
    grade_error_rate, grade_latency, grade_throughput, thresholds_failed (list of texts) and
    breaking_point.

    ``requests`` and the latency figures use the rows labelled with the phase; ``achieved_rps``
    counts responses completed inside the phase's time window (plan boundaries shifted by
    ``plan_start_s``, the run time at which the plan started; inferred from the rows when None),
    so an open-model schedule that the target cannot keep up with shows up as a shortfall.
    Run-wide thresholds are judged on each phase's rows; phase-scoped ones on their phase only.
    """
    ths = _coerce(thresholds)
    known = {p.name for p in plan.phases}
    for t in ths:
        if t.phase is not None and t.phase not in known:
            raise PlanError(
                f"threshold {str(t)!r}: phase {t.phase!r} is not in the plan; use one "
                f"of {', '.join(sorted(known))}"
            )
    load = events.filter(pl.col("error").is_null() | (pl.col("error").cast(pl.String) != "cancelled"))
    offset = _plan_offset_ns(plan, load, plan_start_s)
    in_load = load.filter(~pl.col("phase").cast(pl.String).is_in(["setup", "teardown"]).fill_null(False))
    lat = (pl.col("t_end") - pl.col("t_start")).cast(pl.Float64) / 1e6
    resp = (pl.col("t_end") - pl.col("t_intended")).cast(pl.Float64) / 1e6
    stats = load.group_by(pl.col("phase").cast(pl.String)).agg(
        requests=pl.len(),
        errors=pl.col("error").is_not_null().sum(),
        p50_ms=lat.quantile(0.5, interpolation="linear"),
        p95_ms=lat.quantile(0.95, interpolation="linear"),
        p99_ms=lat.quantile(0.99, interpolation="linear"),
        max_ms=lat.max(),
        resp_p99_ms=resp.quantile(0.99, interpolation="linear"),
    )
    by_phase = {r["phase"]: r for r in stats.iter_rows(named=True)}
    ws_by_phase: dict[str, dict[str, int]] = {}
    if ws_events is not None:
        ws_stats = ws_events.group_by(pl.col("phase").cast(pl.String)).agg(
            ws_opened=(pl.col("kind").cast(pl.String) == "connect").sum(),
            ws_dropped=(pl.col("error").cast(pl.String) == "dropped").sum(),
        )
        ws_by_phase = {r["phase"]: r for r in ws_stats.iter_rows(named=True)}
    stat_keys = sorted({k for v in (phase_stats or {}).values() for k in v})

    rows: list[dict[str, Any]] = []
    found = False
    for i, ph in enumerate(plan.phases):
        s = by_phase.get(ph.name, {})
        start, dur = plan.boundaries[i], ph.duration
        t0 = offset + int(round(start * 1e9))
        t1 = offset + int(round((start + dur) * 1e9))
        completed = in_load.filter((pl.col("t_end") >= t0) & (pl.col("t_end") < t1)).height
        achieved = completed / dur
        asked = plan.mean_level(i) if ph.model == "open" else None
        requests = s.get("requests", 0)
        errors = s.get("errors", 0)
        err_rate = errors / requests if requests else None
        row: dict[str, Any] = {
            "phase": ph.name,
            "phase_index": i,
            "model": ph.model,
            "start_s": start,
            "duration_s": dur,
            "asked_rps": asked,
            "concurrency": None if ph.model == "open" else plan.mean_level(i),
            "requests": requests,
            "achieved_rps": achieved,
            "errors": errors,
            "error_rate": err_rate,
            **{k: s.get(k) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "resp_p99_ms")},
        }
        if ws_events is not None:
            w = ws_by_phase.get(ph.name, {})
            row["ws_opened"] = w.get("ws_opened", 0)
            row["ws_dropped"] = w.get("ws_dropped", 0)
        for k in stat_keys:
            row[k] = (phase_stats or {}).get(ph.name, {}).get(k)
        g = grade(err_rate, row["max_ms"], achieved, grades)
        row["grade_error_rate"], row["grade_latency"], row["grade_throughput"] = (
            g["error_rate"],
            g["latency"],
            g["throughput"],
        )
        scoped = rescope(ths, ph.name)
        failed: list[str] = []
        if scoped:
            res = evaluate(scoped, events, ws_events, plan=plan)
            failed = res.filter(~pl.col("passed"))["threshold"].to_list()
        short = asked is not None and asked > 0 and achieved < (1 - SHORTFALL) * asked
        row["thresholds_failed"] = failed
        row["breaking_point"] = not found and (bool(failed) or short)
        found = found or row["breaking_point"]
        rows.append(row)
    return pl.DataFrame(rows, schema=_schema(ws_events is not None, stat_keys))


def _schema(with_ws: bool, stat_keys: list[str]) -> dict[str, pl.DataType]:
    f, i, s = pl.Float64(), pl.Int64(), pl.String()
    schema: dict[str, pl.DataType] = {
        "phase": s,
        "phase_index": i,
        "model": s,
        "start_s": f,
        "duration_s": f,
        "asked_rps": f,
        "concurrency": f,
        "requests": i,
        "achieved_rps": f,
        "errors": i,
        "error_rate": f,
        "p50_ms": f,
        "p95_ms": f,
        "p99_ms": f,
        "max_ms": f,
        "resp_p99_ms": f,
    }
    if with_ws:
        schema |= {"ws_opened": i, "ws_dropped": i}
    schema |= {k: f for k in stat_keys}
    schema |= {
        "grade_error_rate": s,
        "grade_latency": s,
        "grade_throughput": s,
        "thresholds_failed": pl.List(pl.String()),
        "breaking_point": pl.Boolean(),
    }
    return schema


def breaking_point(assessment: pl.DataFrame) -> str | None:
    """The name of the first phase flagged as the breaking point, or None if the system held."""
    hit = assessment.filter(pl.col("breaking_point"))
    return hit["phase"][0] if hit.height else None


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return None if not math.isfinite(x) else x
    if isinstance(x, Mapping):
        return {
            str(k): (None if any(w in str(k).lower() for w in _SECRET_WORDS) and v else _json_safe(v))
            for k, v in x.items()
        }
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if x is None or isinstance(x, str | int | bool):
        return x
    return str(x)


def report_json(
    plan: StressPlan,
    assessment: pl.DataFrame,
    overall: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """A JSON-safe report shaped like the seed's: timestamp, per-phase results, overall, config
    (plus the plan and the breaking point). Values of keys that look like secrets (password,
    token, secret, authorization, cookie) are blanked. ``timestamp`` (ISO 8601) defaults to
    ``overall["timestamp"]``, else now in UTC.
    """
    if timestamp is None:
        timestamp = overall.get("timestamp")
    if timestamp is None:
        from datetime import UTC, datetime

        timestamp = datetime.now(UTC).isoformat()
    results = []
    for r in assessment.iter_rows(named=True):
        g = {
            "error_rate": r.pop("grade_error_rate"),
            "latency": r.pop("grade_latency"),
            "throughput": r.pop("grade_throughput"),
        }
        results.append({**r, "assessment": g})
    return _json_safe(
        {
            "timestamp": timestamp,
            "plan": plan.to_dict(),
            "results": results,
            "breaking_point": breaking_point(assessment),
            "overall": dict(overall),
            "config": dict(config),
        }
    )
