"""Assessment: grades, per-phase results and the breaking point, on synthetic runs."""

from __future__ import annotations

import dataclasses
import json

import polars as pl
import pytest

from taskforge_perf.assessment import (
    DEFAULT_GRADES,
    Grades,
    assess,
    breaking_point,
    grade,
    report_json,
)
from taskforge_perf.plan import Phase, PlanError, StressPlan
from taskforge_perf.schema import HTTP_SCHEMA, WS_SCHEMA
from taskforge_perf.thresholds import p99

pytestmark = pytest.mark.timeout(10)
NS = 1_000_000_000


def queue_run(plan: StressPlan, capacity_rps: float, *, offset_s: float = 0.0) -> pl.DataFrame:
    """An open-model run against one FIFO server that serves ``capacity_rps`` requests/s:
    requests start on schedule and wait in the server's queue once it is saturated."""
    service = 1.0 / capacity_rps
    t_start, t_end, phases = [], [], []
    free_at = 0.0
    for t in plan.arrival_times():
        done = max(t, free_at) + service
        free_at = done
        t_start.append(int((t + offset_s) * NS))
        t_end.append(int((done + offset_s) * NS))
        phases.append(plan.at(t).phase.name)  # type: ignore[union-attr]
    n = len(t_start)
    return pl.DataFrame(
        {
            "t_intended": t_start,
            "t_start": t_start,
            "t_end": t_end,
            "status": [202] * n,
            "error": [None] * n,
            "bytes_in": [50] * n,
            "bytes_out": [80] * n,
            "endpoint": ["POST /tasks"] * n,
            "method": ["POST"] * n,
            "user": [f"loadtest{i % 20}@example.com" for i in range(n)],
            "phase": phases,
            "worker": [0] * n,
            "task_id": [None] * n,
            "group": [None] * n,
            "session": [None] * n,
        },
        schema=HTTP_SCHEMA,
    )


STEPS = StressPlan.steps(100, 400, 100, 5)  # 100, 200, 300, 400 req/s, 5 s each


def test_grades_follow_the_seed() -> None:
    assert grade(0.0, 999, 101) == {
        "error_rate": "excellent",
        "latency": "excellent",
        "throughput": "excellent",
    }
    assert grade(0.01, 1000, 100) == {
        "error_rate": "good",
        "latency": "acceptable",
        "throughput": "good",
    }
    assert grade(0.05, 5000, 50) == {
        "error_rate": "needs improvement",
        "latency": "slow",
        "throughput": "low",
    }
    assert grade(None, None, None) == {"error_rate": None, "latency": None, "throughput": None}
    strict = dataclasses.replace(DEFAULT_GRADES, latency_excellent_ms=100)
    assert grade(0, 500, 500, strict)["latency"] == "acceptable"
    with pytest.raises(ValueError, match="Grades.error_excellent .* must be <= Grades.error_good"):
        Grades(error_excellent=0.1, error_good=0.05)
    with pytest.raises(ValueError, match="Grades.rps_good must be a number >= 0"):
        Grades(rps_good=-1)


def test_steps_run_breaks_at_step_3_when_achieved_falls_below_asked() -> None:
    events = queue_run(STEPS, capacity_rps=250)
    a = assess(STEPS, events)
    assert a["phase"].to_list() == [p.name for p in STEPS.phases]
    assert a["asked_rps"].to_list() == [100.0, 200.0, 300.0, 400.0]
    assert a["requests"].to_list() == [500, 1000, 1500, 2000]
    achieved = a["achieved_rps"].to_list()
    assert achieved[0] == pytest.approx(100, abs=0.5) and achieved[1] == pytest.approx(200, abs=0.5)
    assert achieved[2] == pytest.approx(250, abs=1) and achieved[3] == pytest.approx(250, abs=1)
    assert a["breaking_point"].to_list() == [False, False, True, False]
    assert breaking_point(a) == "step 3 (300/s)"
    assert a["p50_ms"][0] == pytest.approx(4.0)
    assert a["max_ms"][3] > a["max_ms"][2] > 100  # the queue grows once saturated
    assert a["error_rate"].to_list() == [0.0] * 4
    assert a["grade_throughput"].to_list() == ["good", "excellent", "excellent", "excellent"]
    assert a["concurrency"].null_count() == 4


def test_breaking_point_is_inferred_with_a_plan_offset() -> None:
    # the plan started 7 s into the run (after setup): windows shift with it
    events = queue_run(STEPS, capacity_rps=250, offset_s=7.0)
    assert breaking_point(assess(STEPS, events)) == "step 3 (300/s)"
    assert breaking_point(assess(STEPS, events, plan_start_s=7.0)) == "step 3 (300/s)"


def test_system_that_holds_has_no_breaking_point() -> None:
    a = assess(STEPS, queue_run(STEPS, capacity_rps=1000))
    assert not a["breaking_point"].any()
    assert breaking_point(a) is None


def test_threshold_failure_marks_the_breaking_point() -> None:
    events = queue_run(STEPS, capacity_rps=1000)
    a = assess(STEPS, events, thresholds=["p99 < 3ms"])  # service time is 1 ms: all pass
    assert breaking_point(a) is None
    scoped = assess(STEPS, events, thresholds=[p99(phase="step 2 (200/s)") < 0.5])
    assert breaking_point(scoped) == "step 2 (200/s)"
    assert scoped["thresholds_failed"].to_list() == [
        [],
        ['p99(phase="step 2 (200/s)") < 0.5ms'],  # names with parentheses are quoted
        [],
        [],
    ]
    with pytest.raises(PlanError, match="phase 'peak' is not in the plan"):
        assess(STEPS, events, thresholds=["p99(phase=peak) < 1"])


def test_closed_phases_ws_and_phase_stats() -> None:
    plan = StressPlan([Phase("warmup", 2, concurrency=2), Phase("peak", 2, concurrency=4, ramp=True)])
    rows = []
    for i in range(40):  # 10 req/s over 4 s
        t = int(i * 0.1 * NS)
        rows.append(
            {
                "t_intended": t,
                "t_start": t,
                "t_end": t + 20_000_000,
                "status": 500 if i == 30 else 200,
                "error": "http_5xx" if i == 30 else None,
                "endpoint": "GET /health",
                "method": "GET",
                "phase": "warmup" if i < 20 else "peak",
                "worker": 0,
            }
        )
    rows.append(
        {
            "t_intended": 0,
            "t_start": 0,
            "t_end": 10**9,
            "status": 0,
            "error": "cancelled",
            "endpoint": "GET /health",
            "method": "GET",
            "phase": "peak",
            "worker": 0,
        }
    )
    events = pl.DataFrame([{k: r.get(k) for k in HTTP_SCHEMA} for r in rows], schema=HTTP_SCHEMA)
    ws = pl.DataFrame(
        [
            {"t": 1, "kind": "connect", "phase": "warmup"},
            {"t": 2, "kind": "connect", "phase": "peak"},
            {"t": 3, "kind": "close", "error": "dropped", "code": 1006, "phase": "peak"},
        ],
        schema=WS_SCHEMA,
    )
    a = assess(plan, events, ws, phase_stats={"peak": {"planned": 40, "late": 3}}, plan_start_s=0.0)
    assert a["asked_rps"].to_list() == [None, None]
    assert a["concurrency"].to_list() == [2.0, 3.0]  # the ramp's mean
    assert a["requests"].to_list() == [20, 21]  # every row of the phase, the cancelled one too
    assert a["answered"].to_list() == [20, 20] and a["not_sent"].to_list() == [0, 1]
    # the cancelled row is neither an error nor in the denominator
    assert a["errors"].to_list() == [0, 1] and a["error_rate"].to_list() == [0.0, 0.05]
    assert a["achieved_rps"].to_list() == [10.0, 10.0]
    assert a["ws_opened"].to_list() == [1, 1] and a["ws_dropped"].to_list() == [0, 1]
    assert a["planned"].to_list() == [None, 40.0] and a["late"].to_list() == [None, 3.0]
    assert a["grade_error_rate"].to_list() == ["excellent", "needs improvement"]
    assert breaking_point(a) is None


def test_report_json_is_json_safe_and_has_no_secrets() -> None:
    a = assess(STEPS, queue_run(STEPS, capacity_rps=250))
    report = report_json(
        STEPS,
        a,
        {"requests": 5000, "error_rate": 0.0, "nan": float("nan")},
        {
            "users": 20,
            "password": "testpassword123",
            "target": {"base_url": "http://127.0.0.1:3000", "access_token": "x"},
        },
        timestamp="2025-01-01T00:00:00+00:00",
    )
    text = json.dumps(report, allow_nan=False)
    assert "testpassword123" not in text and '"x"' not in text
    assert report["timestamp"] == "2025-01-01T00:00:00+00:00"
    assert report["breaking_point"] == "step 3 (300/s)"
    assert [r["phase"] for r in report["results"]] == [p.name for p in STEPS.phases]
    assert report["results"][0]["assessment"] == {
        "error_rate": "excellent",
        "latency": "excellent",
        "throughput": "good",
    }
    assert report["overall"]["nan"] is None
    assert report["plan"]["phases"][2]["rate"] == 300
    assert set(report) == {"timestamp", "plan", "results", "breaking_point", "overall", "config"}
    assert isinstance(report_json(STEPS, a, {}, {})["timestamp"], str)


# -- outcome classes and one throughput (issue 11) ----------------------------------------------
def overloaded_run(plan: StressPlan, capacity_rps: float) -> pl.DataFrame:
    """An open-model run whose requests wait in the tester's FIFO queue for a server of
    ``capacity_rps``; those still queued when the plan ends are dropped, as the engine records them
    (error "dropped", status 0, ``t_start == t_end`` at the drop time)."""
    service = 1.0 / capacity_rps
    out, free_at = [], 0.0
    end = plan.duration
    for t in plan.arrival_times():
        phase = plan.at(t).phase.name  # type: ignore[union-attr]
        start = max(t, free_at)
        if start < end:
            free_at = start + service
            out.append((t, start, free_at, 202, None, phase))
        else:
            out.append((t, end, end, 0, "dropped", phase))
    return pl.DataFrame(
        [
            {"t_intended": int(a * NS), "t_start": int(b * NS), "t_end": int(c * NS), "status": st,
             "error": e, "endpoint": "POST /tasks", "method": "POST", "phase": ph, "worker": 0}  # fmt: skip
            for a, b, c, st, e, ph in out
        ],
        infer_schema_length=None,
    ).select((pl.col(c) if c in ("t_intended", "t_start", "t_end", "status", "error", "endpoint", "method",
                                  "phase", "worker") else pl.lit(None)).cast(t).alias(c)
             for c, t in HTTP_SCHEMA.items())  # fmt: skip


def test_a_phase_with_no_answers_is_failed_never_excellent() -> None:
    from taskforge_perf import analysis

    plan = StressPlan.steps(50, 1050, 500, 1.0)  # 50, 550, 1050 req/s
    events = overloaded_run(plan, capacity_rps=100)
    a = assess(plan, events)
    last = a.row(2, named=True)
    assert last["answered"] == 0 and last["not_sent"] == last["requests"] == 1050
    assert last["p50_ms"] is None and last["max_ms"] is None  # not 0 ms from dropped rows
    assert last["error_rate"] is None  # nothing was sent: no target error rate
    assert (last["grade_error_rate"], last["grade_latency"], last["grade_throughput"]) == ("failed",) * 3
    mid = a.row(1, named=True)
    assert mid["not_sent"] > 0 and mid["answered"] > 0
    assert mid["errors"] == 0 and mid["error_rate"] == 0.0  # dropped rows are not target errors
    assert mid["grade_error_rate"] == "excellent" and mid["breaking_point"]
    # by_phase and the assessment agree to the row
    ph = analysis.by_phase(events, plan=plan)
    for col_a, col_p in (
        ("requests", "count"),
        ("answered", "answered"),
        ("not_sent", "not_sent"),
        ("errors", "errors"),
        ("answered_in_window", "answered_in_window"),
        ("achieved_rps", "rps"),
        ("p95_ms", "p95_ms"),
        ("max_ms", "max_ms"),
    ):
        assert a[col_a].to_list() == ph[col_p].to_list(), col_a


def test_a_silent_closed_phase_is_the_breaking_point() -> None:
    plan = StressPlan([Phase("a", 1, concurrency=2), Phase("b", 1, concurrency=2)])
    ev = pl.DataFrame(
        [
            {"t_intended": i * NS // 10, "t_start": i * NS // 10, "t_end": i * NS // 10 + 1000,
             "status": 200 if i < 10 else 0, "error": None if i < 10 else "refused",
             "phase": "a" if i < 10 else "b", "endpoint": "GET /health"}  # fmt: skip
            for i in range(20)
        ]
    ).select((pl.col(c) if c in ("t_intended", "t_start", "t_end", "status", "error", "phase", "endpoint")
              else pl.lit(None)).cast(t).alias(c) for c, t in HTTP_SCHEMA.items())  # fmt: skip
    a = assess(plan, ev, plan_start_s=0.0)
    assert a["grade_latency"].to_list() == ["excellent", "failed"]
    assert a["error_rate"].to_list() == [0.0, 1.0]  # refused rows are target errors, and were sent
    assert breaking_point(a) == "b"


def task_frames(done_s: list[float | None], created_phase: str = "peak") -> tuple[pl.DataFrame, pl.DataFrame]:
    """HTTP creation rows and WebSocket rows of tasks created at 0 s and completed after ``done_s``
    (None: never); the run's last event is at 60 s."""
    http = []
    ws = [{"t": 60 * NS, "kind": "close", "phase": "peak"}]
    for k, d in enumerate(done_s):
        tid = f"t{k}"
        http.append({"t_intended": 0, "t_start": 0, "t_end": 1000, "status": 202, "task_id": tid,
                     "phase": created_phase, "endpoint": "POST /tasks"})  # fmt: skip
        ws.append({"t": 2000, "kind": "subscribe", "task_id": tid, "status": "own", "phase": "peak"})
        if d is not None:
            ws.append({"t": int(d * NS), "kind": "message", "task_id": tid, "status": "completed",
                       "since_created_ns": int(d * NS), "phase": "peak"})  # fmt: skip
    ev = pl.DataFrame([{k: r.get(k) for k in HTTP_SCHEMA} for r in http], schema=HTTP_SCHEMA)
    return ev, pl.DataFrame([{k: r.get(k) for k in WS_SCHEMA} for r in ws], schema=WS_SCHEMA)


def test_task_completion_and_latency_join_the_grades() -> None:
    plan = StressPlan([Phase("peak", 60, rate=1)])
    ev, ws = task_frames([1.0] * 99 + [2.0])
    a = assess(plan, ev, ws, plan_start_s=0.0).row(0, named=True)
    assert (a["tasks_tracked"], a["tasks_completed"], a["tasks_judged"]) == (100, 100, 100)
    assert a["task_completion"] == 1.0 and a["grade_tasks"] == "excellent"
    assert a["task_p95_ms"] == pytest.approx(1000.0) and a["grade_task_latency"] == "excellent"
    # the HTTP side looks perfect, but 90 of 100 tasks never completed
    ev, ws = task_frames([1.0] * 10 + [None] * 90)
    a2 = assess(plan, ev, ws, plan_start_s=0.0)
    assert a2["grade_latency"][0] == "excellent"
    assert a2["task_completion"][0] == pytest.approx(0.1) and a2["grade_tasks"][0] == "needs improvement"
    assert breaking_point(a2) == "peak"
    ev, ws = task_frames([40.0] * 10)
    assert assess(plan, ev, ws, plan_start_s=0.0)["grade_task_latency"][0] == "slow"
    # tasks created less than task_settle_s before the last event are not judged yet
    lenient = dataclasses.replace(DEFAULT_GRADES, task_settle_s=120)
    ev, ws = task_frames([1.0] + [None] * 9)
    a3 = assess(plan, ev, ws, plan_start_s=0.0, grades=lenient).row(0, named=True)
    assert (a3["tasks_judged"], a3["task_completion"], a3["grade_tasks"]) == (1, 1.0, "excellent")
    with pytest.raises(ValueError, match="Grades.tasks_good .* must be <= Grades.tasks_excellent"):
        Grades(tasks_good=1.0, tasks_excellent=0.5)
    report = report_json(plan, a2, {}, {})
    assert report["results"][0]["assessment"]["tasks"] == "needs improvement"


# -- who stopped keeping up: the target or the tester (issue 16) --------------------------------
def _health(phases: list[str], hot: set[str]) -> pl.DataFrame:
    """Two health intervals per phase; the ``hot`` phases' own event-loop lag is past the limit."""
    from taskforge_perf.schema import HEALTH_SCHEMA

    rows = [
        {
            "t_s": float(k),
            "interval_s": 0.5,
            "phase": p,
            "own_lag_p99_ms": 40.0 if p in hot else 0.5,
            "lag_p99_ms": 40.0 if p in hot else 0.5,
            "cpu": 0.3,
        }  # fmt: skip
        for p in phases
        for k in range(2)
    ]
    return pl.DataFrame([{k: r.get(k) for k in HEALTH_SCHEMA} for r in rows], schema=HEALTH_SCHEMA)


TESTER_SAT = {"saturated": True, "causes": ["tester"], "reasons": ["tester: event loop busy"]}


def test_a_shortfall_while_the_tester_was_saturated_is_not_the_targets_breaking_point() -> None:
    from taskforge_perf.assessment import findings, generator_limit

    names = [p.name for p in STEPS.phases]
    events = queue_run(STEPS, capacity_rps=250)
    health = _health(names, hot=set(names[2:]))
    a = assess(STEPS, events, generator=TESTER_SAT, health=health)
    assert a["tester_saturated"].to_list() == [False, False, True, True]
    assert a["limited_by"].to_list() == [None, None, "tester", "tester"]
    assert breaking_point(a) is None and generator_limit(a) == "step 3 (300/s)"
    assert findings(a) == [
        "the tester could not keep up at phase 'step 3 (300/s)': the figures of this phase include its "
        "own queueing (the load generator was saturated by its own work); not a breaking point of the target"
    ]
    # saturated only in step 3: step 4's shortfall is the target's again
    a4 = assess(STEPS, events, generator=TESTER_SAT, health=_health(names, hot={names[2]}))
    assert breaking_point(a4) == "step 4 (400/s)" and generator_limit(a4) == "step 3 (300/s)"
    # a machine busy elsewhere (the tester waited for a CPU) does not excuse the target
    machine = {"saturated": True, "causes": ["machine"], "reasons": ["machine: waiting for a CPU"]}
    am = assess(STEPS, events, generator=machine, health=health)
    assert breaking_point(am) == "step 3 (300/s)" and generator_limit(am) is None
    assert findings(am) == [
        "capacity reached at phase 'step 3 (300/s)': the target answered 250 of 300 req/s asked (83%)"
    ]
    # without per-phase health rows a tester-saturated run excuses every phase
    assert assess(STEPS, events, generator=TESTER_SAT)["limited_by"].to_list() == [
        None,
        None,
        "tester",
        "tester",
    ]


def test_load_the_tester_did_not_send_is_not_the_targets_shortfall() -> None:
    from taskforge_perf.assessment import findings, generator_limit

    events = queue_run(STEPS, capacity_rps=1000)  # the target holds every step
    step4 = pl.col("phase") == "step 4 (400/s)"
    late = step4 & (pl.col("t_intended") >= int(17 * NS))  # the last 3 s of step 4: 60% of it
    for kind in ("auth", "dropped"):
        ev = events.with_columns(
            error=pl.when(late).then(pl.lit(kind)).otherwise(pl.col("error")),
            status=pl.when(late).then(0).otherwise(pl.col("status")),
        )
        stats = {p.name: {"cap_hits": 0} for p in STEPS.phases}
        a = assess(STEPS, ev, phase_stats=stats)
        assert a["offered_rps"][3] == pytest.approx(160.0) and a["achieved_rps"][3] < 170
        assert a["limited_by"].to_list() == [None, None, None, "tester"], kind
        assert breaking_point(a) is None and generator_limit(a) == "step 4 (400/s)"
        assert findings(a) == [
            "the tester could not keep up at phase 'step 4 (400/s)': it sent 160 of 400 req/s asked; "
            "not a breaking point of the target"
        ]
    # dropped behind a full in-flight cap: those requests waited on the target, so it broke
    capped = assess(STEPS, ev, phase_stats={"step 4 (400/s)": {"cap_hits": 12}})
    assert capped["offered_rps"][3] == pytest.approx(400.0)
    assert breaking_point(capped) == "step 4 (400/s)" and generator_limit(capped) is None
    assert findings(capped)[0].startswith(
        "capacity reached at phase 'step 4 (400/s)': the target answered 16"
    )


def test_the_target_short_of_what_the_tester_sent_is_still_a_breaking_point() -> None:
    from taskforge_perf.assessment import findings

    events = queue_run(STEPS, capacity_rps=250)
    short = (pl.col("phase") == "step 4 (400/s)") & (pl.col("t_intended") >= int(19 * NS))
    ev = events.with_columns(
        error=pl.when(short).then(pl.lit("client")).otherwise(pl.col("error")),
        status=pl.when(short).then(0).otherwise(pl.col("status")),
    )
    a = assess(STEPS, ev)
    assert breaking_point(a) == "step 3 (300/s)"  # unchanged: the target fell behind first
    assert a["limited_by"].to_list() == [None, None, "target", "target"]
    assert a["offered_rps"][3] == pytest.approx(320.0)  # 20% not sent, yet 250 < 95% of 320
    assert findings(a) == [
        "capacity reached at phase 'step 3 (300/s)': the target answered 250 of 300 req/s asked (83%)"
    ]
    # a threshold failing in a phase is the target's breaking point, said with the threshold
    held = assess(STEPS, queue_run(STEPS, capacity_rps=1000), thresholds=[p99(phase="step 2 (200/s)") < 0.5])
    assert findings(held) == [
        "breaking point at phase 'step 2 (200/s)': threshold failed there: "
        'p99(phase="step 2 (200/s)") < 0.5ms'
    ]
