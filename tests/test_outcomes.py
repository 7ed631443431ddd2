"""Truth under stress (issue 11), analysis side: outcome classes in headlines, the live views, and
the whole chain against the real reference target driven far above its capacity."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.dashboard import LiveDashboard, snapshot_html, static_html
from taskforge_perf.live import LoadCounts, format_snapshot
from taskforge_perf.mix import Endpoint
from taskforge_perf.schema import HTTP_SCHEMA
from tests.cli_process import cli

FAST = {"hash_iterations": 1000}
HEALTH = tfp.RequestMix([Endpoint("GET /health", "GET", "/health", auth=False)])


def snap(**kw: Any) -> tfp.Snapshot:
    base: dict[str, Any] = dict(
        elapsed_s=0.0,
        planned_s=10.0,
        phase="setup",
        phase_remaining_s=0.0,
        rps=0.0,
        requests=0,
        in_flight=0,
        errors={},
        approx_p50_ms=None,
        approx_p95_ms=None,
        approx_p99_ms=None,
        tasks_created=0,
        ws_open=0,
        ws_completed=0,
        late=0,
    )
    base.update(kw)
    return tfp.Snapshot(**base)


def test_live_counts_keep_setup_outcomes_and_not_sent_rows_apart() -> None:
    counts = LoadCounts()
    counts.update(snap(requests=40, errors={"http_4xx": 20}))  # sign-ups of existing users: 409
    counts.update(snap(phase="peak", elapsed_s=1.0, requests=140, errors={"http_4xx": 20}))
    assert counts.load_errors == {} and counts.setup == {"http_4xx": 20}
    later = snap(
        phase="peak",
        elapsed_s=2.0,
        requests=400,
        rps=260.0,
        errors={"http_4xx": 20, "http_5xx": 5, "refused": 10, "dropped": 40, "cancelled": 2},
    )
    counts.update(later)
    assert counts.load_errors == {"http_5xx": 5, "refused": 10}
    assert counts.not_sent == {"dropped": 40, "cancelled": 2}
    # answered: 260 more requests, of which 10 refused, 40 dropped and 2 cancelled got no answer
    assert counts.answered_rps == pytest.approx(208.0)
    html = snapshot_html(later, counts=counts)
    assert "Load errors (15)" in html and "Not sent (42)" in html and "dropped 40" in html
    assert "Auth outcomes at set-up (not load errors)" in html and "http_4xx 20" in html
    assert "Answered/s (last interval)" in html and ">208<" in html
    line = format_snapshot(later, counts)
    assert "15 err" in line and "not sent: 40 dropped, 2 cancelled" in line and "208 answered/s" in line
    # the dashboard keeps the same counts across its throttled calls
    dash = LiveDashboard(title="t", show=False, clock=lambda: 0.0, min_interval=10.0)
    dash.update(snap(requests=40, errors={"http_4xx": 20}))
    dash(snap(requests=41, errors={"http_4xx": 21}))  # throttled, still a set-up snapshot
    dash.update(snap(phase="peak", elapsed_s=1.0, requests=100, errors={"http_4xx": 21}))
    assert dash.counts.load_errors == {} and "Load errors (0)" in dash.stats.value


def hand_run() -> tfp.Run:
    rows = (
        [("setup", "POST /auth/signup", 409, "http_4xx")] * 3
        + [("setup", "POST /auth/login", 200, None)] * 3
        + [("peak", "GET /health", 200, None)] * 50
        + [("peak", "GET /health", 0, "dropped")] * 7
        + [("teardown", "POST /auth/logout", 401, "http_4xx")] * 3
    )
    ev = pl.DataFrame(
        [
            {k: r.get(k) for k in HTTP_SCHEMA}
            for r in (
                {
                    "t_intended": i * 10**7,
                    "t_start": i * 10**7,
                    "t_end": i * 10**7 + (0 if e else 10**6),
                    "phase": ph,
                    "endpoint": ep,
                    "method": ep.split()[0],
                    "status": st,
                    "error": e,
                }  # fmt: skip
                for i, (ph, ep, st, e) in enumerate(rows)
            )
        ],
        schema=HTTP_SCHEMA,
    )
    meta = {"name": "hand", "duration_s": 0.6, "stopped": "completed", "counters": {"tasks_created": 0}}
    return tfp.Run(ev, None, meta)


def test_end_of_run_views_count_load_errors_only() -> None:
    run = hand_run()
    assert run.summary()["errors"].to_list() == [0]
    assert run.headline() == [
        "57 requests (50 answered), 0 errors",
        "not sent: 7 dropped",
        "auth outcomes (setup/teardown, not load errors): POST /auth/logout 401 x3, POST /auth/signup 409 x3",
    ]
    html = static_html(run)
    assert "57 load requests (50 answered), 0 load errors" in html
    assert "Not sent (tester-side, not target errors): dropped 7" in html
    assert "POST /auth/signup 409 3" in html and "POST /auth/logout 401 3" in html


@pytest.mark.timeout(120)
def test_cli_headline_shows_signup_409s_as_auth_outcomes() -> None:
    with tfp.ReferenceTarget(seed=41, **FAST) as target:
        args = ["run", "--base-url", target.base_url, "--duration", "0.5", "--concurrency", "2",
                "--users", "3", "--email-prefix", "again", "--quiet", "--no-save"]  # fmt: skip
        first = cli(*args)
        second = cli(*args)  # the users exist now: every sign-up is a 409, then a login
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    head = next(line for line in second.stdout.splitlines() if " requests (" in line)
    assert " answered), 0 errors," in head, second.stdout
    assert "auth outcomes (setup/teardown, not load errors): POST /auth/signup 409 x3" in second.stdout


@pytest.mark.timeout(120)
async def test_far_above_capacity_every_figure_stays_true() -> None:
    """A stepped open-model plan far above a capacity-limited target: the last step's requests all
    wait behind the second's in the tester's queue and are dropped at the end."""
    plan = tfp.StressPlan.steps(50, 1050, 500, 1.0)  # 50, 550, 1050 req/s, 1 s each
    async with tfp.ReferenceTarget(seed=31, max_concurrency=1, service_time=0.01, **FAST) as target:
        # ~100 req/s of capacity; the target itself never answers an error
        t = tfp.Target(target.base_url, request_timeout=1.0)
        tester = tfp.LoadTester(
            t, tfp.UserPool(count=2, email_prefix="over"), HEALTH, seed=7, max_in_flight=4
        )
        run = await tester.run(plan)
    ev = run.load_events()
    steps = [p.name for p in plan.phases]
    dropped = ev.filter(pl.col("error").cast(pl.String) == "dropped")
    assert dropped.height > 500, ev.group_by("phase", "error").len()
    assert ev.filter(pl.col("status") >= 400).height == 0  # no target-side error at all
    a = run.assessment()
    ph = run.by_phase()
    # no percentile is computed from unanswered rows: the silent step has none, not 0 ms
    silent = [r for r in a.iter_rows(named=True) if r["answered"] == 0]
    assert [r["phase"] for r in silent] == [steps[2]]
    for r in silent:
        assert r["p50_ms"] is None and r["p95_ms"] is None and r["max_ms"] is None
        assert r["grade_latency"] == "failed" and "excellent" not in (
            r["grade_error_rate"],
            r["grade_latency"],
            r["grade_throughput"],
        )
    answered = ev.filter(pl.col("error").is_null())
    lat_min = ((answered["t_end"] - answered["t_start"]) / 1e6).min()
    s = run.summary().row(0, named=True)
    assert s["p50_ms"] >= lat_min > 1.0  # every request the target served took its 10 ms slot
    # dropped rows are excluded from latency and error rate, and counted apart
    assert s["errors"] == 0 and s["error_rate"] == 0.0
    assert s["not_sent"] == ev.filter(pl.col("error").cast(pl.String).is_in(["dropped", "cancelled"])).height
    assert s["answered"] == answered.height
    assert run.evaluate(["error_rate < 1%"])["passed"].to_list() == [True]
    assert run.evaluate(["p95 < 10s"])["actual"][0] == pytest.approx(s["p95_ms"], rel=1e-12)
    assert any(line.startswith("not sent: ") and "dropped" in line for line in run.headline())
    # by_phase and the assessment agree to the row
    assert a["phase"].to_list() == ph["phase"].cast(pl.String).to_list() == steps
    assert a["answered_in_window"].to_list() == ph["answered_in_window"].to_list()
    assert a["achieved_rps"].to_list() == ph["rps"].to_list()
    assert a["requests"].to_list() == ph["count"].to_list()
    assert a["p95_ms"].to_list() == ph["p95_ms"].to_list()
    assert a["breaking_point"].sum() == 1 and not a["breaking_point"][2]
    assert a["achieved_rps"][1] < 0.5 * a["asked_rps"][1]


def test_run_store_listing_leaves_tester_side_kinds_out_of_errors(tmp_path: Any) -> None:
    run = hand_run()
    run.meta.update(
        run_id="hand-1", wall_start_ns=0, counters={"requests": 63, "errors": {"dropped": 7, "http_5xx": 2}}
    )
    run.save(tmp_path / "hand-1")
    listing = tfp.runs(tmp_path)
    assert listing["requests"].to_list() == [63] and listing["errors"].to_list() == [2]
