"""Pass/fail and capacity side by side: a run whose thresholds pass while its last step finds the
target's capacity says both, in the CLI, in `taskforge-perf show` and in the report's verdict box;
a run where the tester could not keep up says so instead of blaming the target (issue 16)."""

from __future__ import annotations

import html
import textwrap
from pathlib import Path

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf import report_parts as rp
from taskforge_perf.assessment import breaking_point, findings, generator_limit
from taskforge_perf.run_text import show_text
from taskforge_perf.schema import HEALTH_SCHEMA
from taskforge_perf.synthetic import synthetic_events
from tests.cli_process import cli

pytestmark = pytest.mark.timeout(120)


def wrap(finding: str) -> list[str]:
    """A finding as the CLI prints it: ``finding: ...`` wrapped at 120 columns."""
    return textwrap.wrap(f"finding: {finding}", 120, subsequent_indent="  ", break_on_hyphens=False)


PLAN = """
[[phases]]
name = "steady"
duration = 2
rate = 40

[[phases]]
name = "overload"
duration = 1
rate = 300
"""


def test_thresholds_pass_and_capacity_is_reached_in_the_last_step(tmp_path: Path) -> None:
    (tmp_path / "plan.toml").write_text(PLAN)
    # one slot of 10 ms: about 100 req/s of capacity; 40 req/s holds, 300 req/s cannot
    with tfp.ReferenceTarget(seed=41, max_concurrency=1, service_time=0.01, hash_iterations=1000) as target:
        out = cli(
            "run",
            "--base-url",
            target.base_url,
            "--plan",
            str(tmp_path / "plan.toml"),
            "--users",
            "2",
            "--timeout",
            "20",
            "--quiet",
            "--save",
            str(tmp_path / "run"),
            "--threshold",
            "error_rate < 1%",
            "--threshold",
            "p95 < 15s",
        )
    assert out.returncode == 0, out.stdout + out.stderr
    run = tfp.load_run(tmp_path / "run")
    a = run.assessment()
    achieved = a["achieved_rps"][1]
    assert a["offered_rps"].to_list() == [40.0, 300.0] and achieved < 0.95 * 300  # sent, not answered
    assert run.passed
    # The tester keeps up with 300 req/s here; should its own event loop have been past its limit in
    # that phase (a machine far busier than usual), the rule pinned by tests/test_assessment.py says
    # the tester could not keep up, and every output must say that instead.
    tester = bool(a["tester_saturated"][1])
    if not tester:
        assert a["limited_by"].to_list() == [None, "target"] and run.breaking_point() == "overload"
        finding = (
            f"capacity reached at phase 'overload': the target answered {achieved:,.0f} of 300 req/s "
            f"asked ({achieved / 300:.0%})"
        )
    else:
        assert a["limited_by"].to_list() == [None, "tester"] and run.breaking_point() is None
        finding = (
            "the tester could not keep up at phase 'overload': the figures of this phase include its own "
            "queueing (the load generator was saturated by its own work); not a breaking point of the target"
        )
    assert findings(a) == [finding]
    # the CLI: pass/fail, then the finding beside it
    lines = out.stdout.splitlines()
    at = lines.index("thresholds: PASSED")
    assert lines[at + 1 :][: len(wrap(finding))] == wrap(finding)
    # taskforge-perf show
    shown = show_text(run)
    assert f"breaking point: {run.breaking_point() or 'none'}" in shown and "\n".join(wrap(finding)) in shown
    # the report's verdict box: the status, and the capacity as a separate finding (on a machine
    # busy with other work the generator's warning makes it INCONCLUSIVE, as before; a warning with
    # the cause "machine" blames no one: the load was sent, so the shortfall stays the target's)
    warning = run.generator_warning()
    v = rp.verdict(run)
    if warning is None:
        assert v.status == "passed" and v.reasons == ("every threshold passed",)
    else:
        assert v.status == "inconclusive" and v.reasons == (warning,)
    assert v.findings == (finding,) and ("error_rate < 1%", "→ 0.00%", "ok") in v.badges
    badge = ("load", "tester could not keep up at overload", "warn") if tester else None
    assert (badge or ("capacity", "reached at overload", "warn")) in v.badges
    box = rp.verdict_html(run)
    assert f">{v.status.upper()}<" in box and f"<b>Finding:</b> {html.escape(finding)}" in box
    assert box.index(html.escape(v.reasons[0])) < box.index("Finding:")
    assert ("tester could not keep up" in box) == tester


def _saturated_run() -> tfp.Run:
    """A two-phase run whose second phase fell short while the tester's own event loop was
    saturated: the tester, not the target, could not keep up."""
    plan = {
        "model": "open",
        "phases": [
            {"name": "a", "duration": 5.0, "rate": 100.0},
            {"name": "b", "duration": 5.0, "rate": 400.0},
        ],
    }
    ev = synthetic_events(500, seed=3, phases=(("a", 5.0, 1.0),), error_fraction=0.0, lateness_ms=0)
    late = synthetic_events(1000, seed=4, phases=(("b", 5.0, 1.0),), error_fraction=0.0, lateness_ms=0)
    late = late.with_columns(pl.col("t_intended", "t_start", "t_end") + int(5e9))
    hot = {"own_lag_p99_ms": 30.0, "lag_p99_ms": 30.0}
    cool = {"own_lag_p99_ms": 1.0, "lag_p99_ms": 1.0}
    intervals = [
        {
            "t_s": t,
            "interval_s": 0.5,
            "phase": "a" if t <= 5 else "b",
            "cpu": 0.4,
            **(cool if t <= 5 else hot),
        }
        for t in (1.0, 3.0, 6.0, 8.0)
    ]
    health = pl.DataFrame([{k: r.get(k) for k in HEALTH_SCHEMA} for r in intervals], schema=HEALTH_SCHEMA)
    meta = {
        "name": "sat",
        "stopped": "completed",
        "plan": plan,
        "load_start_ns": 0,
        "duration_s": 10.0,
        "thresholds": [{"threshold": "error_rate < 1%", "actual": 0.0, "unit": "ratio", "passed": True}],
        "generator": {"saturated": True, "causes": ["tester"], "reasons": ["tester: event loop busy"]},
    }
    return tfp.Run(pl.concat([ev, late]), None, meta, health=health)


def test_a_shortfall_of_a_saturated_tester_is_reported_as_the_testers() -> None:
    run = _saturated_run()
    a = run.assessment()
    assert a["tester_saturated"].to_list() == [False, True]
    assert a["achieved_rps"][1] < 0.95 * 400  # 200 req/s answered of 400 asked
    assert breaking_point(a) is None and generator_limit(a) == "b"
    v = rp.verdict(run)
    assert v.status == "inconclusive" and v.reasons[0].startswith("WARNING: the load generator was saturated")
    assert v.findings == (
        "the tester could not keep up at phase 'b': it sent 200 of 400 req/s asked (the load generator "
        "was saturated by its own work); not a breaking point of the target",
    )
    assert ("load", "tester could not keep up at b", "warn") in v.badges
    assert not [b for b in v.badges if b[0] in ("capacity", "breaking point")]
    box = rp.verdict_html(run)
    assert "INCONCLUSIVE" in box and "not a breaking point of the target" in box


def test_load_the_tester_never_sent_makes_a_passing_verdict_inconclusive() -> None:
    run = _saturated_run()
    run.meta["generator"] = {"saturated": False, "causes": [], "reasons": []}
    a = run.assessment()
    assert a["limited_by"].to_list() == [None, "tester"]  # 200 of 400 req/s asked were sent
    v = rp.verdict(run)
    assert v.status == "inconclusive"
    assert v.reasons == ("the tester could not send the load asked for at phase 'b'",)
    assert v.findings == (
        "the tester could not keep up at phase 'b': it sent 200 of 400 req/s asked; "
        "not a breaking point of the target",
    )
