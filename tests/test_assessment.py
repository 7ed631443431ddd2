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
    assert a["requests"].to_list() == [20, 20]  # the cancelled row is left out
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
