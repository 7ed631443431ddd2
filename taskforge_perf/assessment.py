"""The stress assessment (the seed's StressTester report), computed from a run's frames. Pure.

Per phase: throughput asked vs offered vs achieved, latency percentiles, error rate, WebSocket
stability and task completion, the seed's grades, who stopped keeping up (``limited_by``) and the
breaking point: the first phase where the *target* stopped keeping up, i.e. a threshold fails on
that phase's rows, the achieved throughput falls more than 5% below the load the tester offered
(and the plan asked), nothing offered was answered, or (with WebSocket rows) the task side grades
worst. A phase where the *tester* could not keep up (it sent more than 5% less than asked, or the
generator was saturated by its own work there) is ``limited_by == "tester"`` and never the
target's breaking point (``assessment_findings`` has the rule and the sentences the report and the
CLI print beside pass/fail: thresholds can pass on a run that found the target's capacity).

The row sets are those of ``analysis.by_phase`` (the per-phase figures are taken from it, so the
two agree to the row): latency over answered rows, error rate = target-side errors / sent rows,
achieved throughput = answered responses completed inside the phase's planned window / window.

>>> grade(0.002, 850.0, 120.0)
{'error_rate': 'excellent', 'latency': 'excellent', 'throughput': 'excellent'}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from .analysis_core import load_expr
from .analysis_phase import by_phase
from .analysis_tasks import task_stats
from .assessment_findings import SHORTFALL, attribute, findings, generator_limit, tester_saturated_phases
from .plan import PlanError, StressPlan
from .threshold_eval import _coerce, evaluate, rescope
from .thresholds import Threshold

__all__ = [
    "DEFAULT_GRADES",
    "FAILED",
    "SHORTFALL",
    "Grades",
    "assess",
    "breaking_point",
    "findings",
    "grade",
    "grade_tasks",
    "report_json",
    "generator_limit",
]

#: The grade of every figure of a phase in which no request was answered.
FAILED = "failed"
_SECRET_WORDS = ("password", "token", "secret", "authorization", "cookie")


@dataclass(frozen=True, slots=True, kw_only=True)
class Grades:
    """Grade limits; the HTTP ones are the seed's. Replace with ``dataclasses.replace``.

    Error rate below ``error_excellent`` is "excellent", below ``error_good`` "good", else
    "needs improvement"; max latency (ms) below ``latency_excellent_ms`` "excellent", below
    ``latency_acceptable_ms`` "acceptable", else "slow"; throughput (req/s) above
    ``rps_excellent`` "excellent", above ``rps_good`` "good", else "low". A phase with no
    answered request is "failed" on all three.

    Task side (only with WebSocket rows; not in the seed): the completion ratio of the tasks the
    run tracked (completed / judged; a task is judged once completed, failed, or created at least
    ``task_settle_s`` before the last recorded event) at or above ``tasks_excellent`` is
    "excellent", at or above ``tasks_good`` "good", else "needs improvement"; the p95 of task
    latency (created -> completed, ms) below ``task_latency_excellent_ms`` "excellent", below
    ``task_latency_acceptable_ms`` "acceptable", else "slow".
    """

    error_excellent: float = 0.01
    error_good: float = 0.05
    latency_excellent_ms: float = 1000.0
    latency_acceptable_ms: float = 5000.0
    rps_excellent: float = 100.0
    rps_good: float = 50.0
    tasks_excellent: float = 0.99
    tasks_good: float = 0.95
    task_latency_excellent_ms: float = 5000.0
    task_latency_acceptable_ms: float = 30000.0
    task_settle_s: float = 10.0

    def __post_init__(self) -> None:
        for a, b in (
            ("error_excellent", "error_good"),
            ("latency_excellent_ms", "latency_acceptable_ms"),
            ("rps_good", "rps_excellent"),
            ("tasks_good", "tasks_excellent"),
            ("task_latency_excellent_ms", "task_latency_acceptable_ms"),
        ):
            va, vb = getattr(self, a), getattr(self, b)
            for name, v in ((a, va), (b, vb)):
                if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
                    raise ValueError(f"Grades.{name} must be a number >= 0 (got {v!r})")
            if va > vb:
                raise ValueError(f"Grades.{a} ({va}) must be <= Grades.{b} ({vb}); swap them")
        v = self.task_settle_s
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
            raise ValueError(f"Grades.task_settle_s must be a number of seconds >= 0 (got {v!r})")


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


def grade_tasks(
    completion: float | None, task_p95_ms: float | None, grades: Grades = DEFAULT_GRADES
) -> dict[str, str | None]:
    """The task-side grades (completion ratio, task latency p95); None input gives a None grade.

    >>> grade_tasks(0.5, 2000.0)
    {'tasks': 'needs improvement', 'task_latency': 'excellent'}
    """
    g = grades
    done, lat = _present(completion), _present(task_p95_ms)
    out: dict[str, str | None] = {"tasks": None, "task_latency": None}
    if done is not None:
        out["tasks"] = (
            "excellent" if done >= g.tasks_excellent
            else "good" if done >= g.tasks_good
            else "needs improvement"
        )  # fmt: skip
    if lat is not None:
        out["task_latency"] = (
            "excellent" if lat < g.task_latency_excellent_ms
            else "acceptable" if lat < g.task_latency_acceptable_ms
            else "slow"
        )  # fmt: skip
    return out


def assess(
    plan: StressPlan,
    events: pl.DataFrame,
    ws_events: pl.DataFrame | None = None,
    thresholds: Iterable[Threshold | str] = (),
    *,
    phase_stats: Mapping[str, Mapping[str, float]] | None = None,
    plan_start_s: float | None = None,
    grades: Grades = DEFAULT_GRADES,
    generator: Mapping[str, Any] | None = None,
    health: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per plan phase, in plan order.

    Columns: phase, phase_index, model, start_s, duration_s, asked_rps (open: the rate, or a
    ramp's mean; closed: null), concurrency (closed: mean level), requests (every row of the
    phase), answered, not_sent (tester-side: dropped, cancelled, auth, client), offered_rps (the
    rows the tester put to the target / window: all but ``auth``, ``client`` and, when the phase
    never hit the in-flight cap by ``phase_stats``, ``dropped``), achieved_rps,
    answered_in_window, errors, error_rate, p50_ms, p95_ms, p99_ms, max_ms (latency),
    resp_p99_ms (response time, which includes schedule lateness), ws_opened / ws_dropped and
    tasks_tracked / tasks_completed / tasks_judged / task_completion / task_p95_ms (with
    ``ws_events``), one column per key of ``phase_stats`` (the engine's per-phase counters:
    planned, late, cap_hits, ...), grade_error_rate, grade_latency, grade_throughput (and
    grade_tasks, grade_task_latency with ``ws_events``), thresholds_failed (list of texts),
    tester_saturated (the generator was saturated by its own work in this phase: ``generator`` is
    ``meta["generator"]``, ``health`` is ``run.health``), limited_by ("target", "tester" or null:
    who stopped keeping up, see ``assessment_findings``) and breaking_point (the first phase
    limited by the target).

    The figures are ``analysis.by_phase``'s (answered rows for latency, target-side errors over
    sent rows, achieved = answered responses completed inside the phase's planned window, whose
    start is ``plan_start_s`` on the run clock or inferred from the rows). A phase with no
    answered request is graded "failed", and is a breaking point when the tester sent something in
    it. Run-wide thresholds are judged on each phase's rows; phase-scoped ones on their phase only.
    """
    ths = _coerce(thresholds)
    known = {p.name for p in plan.phases}
    for t in ths:
        if t.phase is not None and t.phase not in known:
            raise PlanError(
                f"threshold {str(t)!r}: phase {t.phase!r} is not in the plan; use one "
                f"of {', '.join(sorted(known))}"
            )
    load = events.filter(load_expr())
    stats = by_phase(load, plan=plan, plan_start_s=plan_start_s)
    per_phase = {str(r["phase"]): r for r in stats.iter_rows(named=True)}
    ws_by_phase: dict[str, dict[str, Any]] = {}
    tasks_by_phase: dict[str, dict[str, Any]] = {}
    with_ws = ws_events is not None
    if ws_events is not None:
        ws_stats = ws_events.group_by(pl.col("phase").cast(pl.String)).agg(
            ws_opened=(pl.col("kind").cast(pl.String) == "connect").sum(),
            ws_dropped=(pl.col("error").cast(pl.String) == "dropped").sum(),
        )
        ws_by_phase = {r["phase"]: r for r in ws_stats.iter_rows(named=True)}
        tstats = task_stats(load, ws_events, grades.task_settle_s)
        tasks_by_phase = {r["phase"]: r for r in tstats.iter_rows(named=True)}
    stat_keys = sorted({k for v in (phase_stats or {}).values() for k in v})
    err = pl.col("error").cast(pl.String)
    unsent = (
        load.group_by(pl.col("phase").cast(pl.String))
        .agg(
            own=err.is_in(["auth", "client"]).sum(),
            dropped=(err == "dropped").sum(),
        )
        .rows_by_key("phase", named=True, unique=True)
    )
    saturated = tester_saturated_phases(generator, health, known)

    rows: list[dict[str, Any]] = []
    found = False
    for i, ph in enumerate(plan.phases):
        s = per_phase[ph.name]
        asked = plan.mean_level(i) if ph.model == "open" else None
        achieved = s["rps"]
        u = unsent.get(ph.name, {"own": 0, "dropped": 0})
        cap_hits = (phase_stats or {}).get(ph.name, {}).get("cap_hits")
        not_offered = u["own"] + (u["dropped"] if cap_hits == 0 else 0)
        window = s["window_s"]
        offered = (s["count"] - not_offered) / window if window else None
        row: dict[str, Any] = {
            "phase": ph.name,
            "phase_index": i,
            "model": ph.model,
            "start_s": plan.boundaries[i],
            "duration_s": ph.duration,
            "asked_rps": asked,
            "concurrency": None if ph.model == "open" else plan.mean_level(i),
            "requests": s["count"],
            "answered": s["answered"],
            "not_sent": s["not_sent"],
            "offered_rps": offered,
            "achieved_rps": achieved,
            "answered_in_window": s["answered_in_window"],
            "errors": s["errors"],
            "error_rate": s["error_rate"],
            **{k: s[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "resp_p99_ms")},
        }
        if with_ws:
            w = ws_by_phase.get(ph.name, {})
            row["ws_opened"] = w.get("ws_opened", 0)
            row["ws_dropped"] = w.get("ws_dropped", 0)
            tk = tasks_by_phase.get(ph.name, {})
            for k in ("tasks_tracked", "tasks_completed", "tasks_judged"):
                row[k] = tk.get(k, 0)
            row["task_completion"] = tk.get("task_completion")
            row["task_p95_ms"] = tk.get("task_p95_ms")
        for k in stat_keys:
            row[k] = (phase_stats or {}).get(ph.name, {}).get(k)
        silent = not s["answered"]
        g = grade(row["error_rate"], row["max_ms"], achieved, grades)
        if silent:  # nothing answered: no figure of this phase may look good
            g = dict.fromkeys(g, FAILED)
        row["grade_error_rate"], row["grade_latency"], row["grade_throughput"] = (
            g["error_rate"],
            g["latency"],
            g["throughput"],
        )
        tasks_bad = False
        if with_ws:
            tg = grade_tasks(row["task_completion"], row["task_p95_ms"], grades)
            row["grade_tasks"], row["grade_task_latency"] = tg["tasks"], tg["task_latency"]
            tasks_bad = tg["tasks"] == "needs improvement" or tg["task_latency"] == "slow"
        scoped = rescope(ths, ph.name)
        failed: list[str] = []
        if scoped:
            res = evaluate(scoped, events, ws_events, plan=plan, plan_start_s=plan_start_s)
            failed = res.filter(~pl.col("passed"))["threshold"].to_list()
        row["thresholds_failed"] = failed
        row["tester_saturated"] = ph.name in saturated
        row["limited_by"] = attribute(
            asked=asked,
            offered=offered,
            achieved=achieved,
            answered=s["answered"],
            sent_any=s["count"] - not_offered > 0,
            thresholds_failed=bool(failed),
            tasks_bad=tasks_bad,
            tester_saturated=row["tester_saturated"],
        )
        row["breaking_point"] = not found and row["limited_by"] == "target"
        found = found or row["breaking_point"]
        rows.append(row)
    return pl.DataFrame(rows, schema=_schema(with_ws, stat_keys))


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
        "answered": i,
        "not_sent": i,
        "offered_rps": f,
        "achieved_rps": f,
        "answered_in_window": i,
        "errors": i,
        "error_rate": f,
        "p50_ms": f,
        "p95_ms": f,
        "p99_ms": f,
        "max_ms": f,
        "resp_p99_ms": f,
    }
    if with_ws:
        schema |= {"ws_opened": i, "ws_dropped": i, "tasks_tracked": i, "tasks_completed": i}
        schema |= {"tasks_judged": i, "task_completion": f, "task_p95_ms": f}
    schema |= {k: f for k in stat_keys}
    schema |= {"grade_error_rate": s, "grade_latency": s, "grade_throughput": s}
    if with_ws:
        schema |= {"grade_tasks": s, "grade_task_latency": s}
    schema |= {
        "thresholds_failed": pl.List(pl.String()),
        "tester_saturated": pl.Boolean(),
        "limited_by": s,
        "breaking_point": pl.Boolean(),
    }
    return schema


def breaking_point(assessment: pl.DataFrame) -> str | None:
    """The first phase where the target stopped keeping up, or None if it held (a phase where the
    tester could not keep up is ``generator_limit``'s, never a breaking point)."""
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
        if "grade_tasks" in r:
            g["tasks"] = r.pop("grade_tasks")
            g["task_latency"] = r.pop("grade_task_latency")
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
