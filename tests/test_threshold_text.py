"""Threshold text: names with parentheses, commas and '=' are quoted and read back; error_rate
values are unambiguous; phase-scoped thresholds on steps() plans survive a run's meta."""

from __future__ import annotations

import pytest

import taskforge_perf as tfp
from taskforge_perf.synthetic import synthetic_events
from taskforge_perf.thresholds import Threshold, ThresholdError, error_rate


@pytest.mark.parametrize(
    "th",
    [
        Threshold("p95", "<", 300, phase="step 1 (100/s)"),
        Threshold("p99", "<=", 1.5, endpoint="GET /a,b", phase="x=y"),
        Threshold("max", ">", 2, endpoint='say "hi" \\ there', phase="(("),
        Threshold("error_rate", "<", 0.07, endpoint="POST /tasks) < 1ms"),
        Threshold("rps", ">=", 0.1 + 0.2, phase=" padded "),
        Threshold("ws.dropped", "==", 0, phase="phase=peak"),
        Threshold("task_latency.p99", "<", 5000, endpoint="generate-pdf"),
    ],
)
def test_str_round_trips(th: Threshold) -> None:
    assert Threshold.parse(str(th)) == th


def test_plain_names_stay_unquoted_and_awkward_ones_are_quoted() -> None:
    assert str(Threshold.parse("p95(POST /tasks) < 300ms")) == "p95(POST /tasks) < 300ms"
    assert str(Threshold("p95", "<", 5, phase="step 1 (100/s)")) == 'p95(phase="step 1 (100/s)") < 5ms'
    assert str(Threshold.parse("error_rate < 1%")) == "error_rate < 1%"


def test_balanced_parentheses_read_without_quotes() -> None:
    # What str() wrote before names were quoted: runs saved then still load.
    th = Threshold.parse("p95(phase=step 2 (200/s)) < 300ms")
    assert th.phase == "step 2 (200/s)" and th.value == 300


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("error_rate < 1%", 0.01),
        ("error_rate < 0.01", 0.01),
        ("error_rate == 0", 0.0),
        ("errors < 100%", 1.0),
    ],
)
def test_error_rate_percent_or_fraction(text: str, value: float) -> None:
    assert Threshold.parse(text).value == value


@pytest.mark.parametrize(
    "text", ["error_rate < 1", "error_rate <= 5", "error_rate < 1.0", "error_rate < 200%"]
)
def test_ambiguous_or_impossible_error_rate_is_refused(text: str) -> None:
    with pytest.raises(ThresholdError, match="ambiguous|fraction 0..1"):
        Threshold.parse(text)


def test_error_rate_builder_refuses_one() -> None:
    with pytest.raises(ThresholdError, match="1 means 100%"):
        error_rate() < 1  # noqa: B015
    assert (error_rate() < 0.5).value == 0.5


def test_phase_thresholds_of_a_steps_plan_work_through_assessment_and_report_json() -> None:
    plan = tfp.StressPlan.steps(100, 300, 100, 10)
    names = [p.name for p in plan.phases]
    ev = synthetic_events(3000, seed=1, phases=[(n, 10.0, 1.0) for n in names])
    meta = {"plan": plan.to_dict(), "duration_s": 30.0, "load_start_ns": 0, "stopped": "completed"}
    run = tfp.Run(ev, None, meta)
    results = run.evaluate([Threshold.parse("p95 < 10s"), Threshold("p95", "<", 0.001, phase=names[1])])
    meta["thresholds"], meta["passed"] = results.to_dicts(), bool(results["passed"].all())
    failed = dict(run.assessment().select("phase", "thresholds_failed").iter_rows())
    assert failed[names[0]] == [] and len(failed[names[1]]) == 1
    assert run.breaking_point() == names[1]
    assert run.report_json()["plan"]["phases"][1]["name"] == names[1]
