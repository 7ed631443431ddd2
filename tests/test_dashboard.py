"""The live dashboard: driven directly with Snapshot objects, then once inside a real kernel."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import nbformat
import pytest

import taskforge_perf as tfp
from taskforge_perf.dashboard import LiveDashboard, in_kernel, snapshot_html, static_html
from taskforge_perf.live import TerminalProgress, live_view
from taskforge_perf.report import execute_notebook

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"


def snap(**kw: Any) -> tfp.Snapshot:
    base: dict[str, Any] = dict(
        elapsed_s=12.0,
        planned_s=60.0,
        phase="peak",
        phase_remaining_s=8.0,
        rps=412.0,
        requests=5_000,
        in_flight=17,
        errors={"timeout": 3, "http_5xx": 9},
        approx_p50_ms=12.5,
        approx_p95_ms=48.0,
        approx_p99_ms=91.2,
        tasks_created=3_900,
        ws_open=50,
        ws_completed=1_234,
        late=0,
    )
    base.update(kw)
    return tfp.Snapshot(**base)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_snapshot_html_shows_every_live_figure() -> None:
    html = snapshot_html(snap(late=4), interval_s=0.5)
    assert "412" in html and "5,000" in html and "17 in flight" in html
    assert "~p50 / ~p95 / ~p99" in html and "streaming estimate" in html
    assert "12.5 / 48.0 / 91.2 ms" in html
    assert html.index("http_5xx 9") < html.index("timeout 3")  # errors by kind, most first
    assert "Open WebSocket connections" in html and ">50<" in html
    assert "3,900 / 1,234" in html  # tasks created / completed
    assert "Late starts" in html
    empty = snapshot_html(snap(errors={}, approx_p50_ms=None, approx_p95_ms=None, approx_p99_ms=None))
    assert "none" in empty and "– / – / – ms" in empty


def test_update_sets_the_widgets() -> None:
    dash = LiveDashboard(title="t", planned_s=60.0, show=False)
    dash.update(snap())
    assert dash.progress.value == 12.0 and dash.progress.max == 60.0
    assert "peak" in dash.status.value and "8 s left in phase" in dash.status.value
    assert "48 s left" in dash.status.value
    assert "412" in dash.stats.value
    dash.update(snap(phase="setup", elapsed_s=0.0))
    assert "setting up users" in dash.status.value
    dash.update(snap(elapsed_s=99.0))  # past the plan (drain): the bar stays full
    assert dash.progress.value == 60.0


def test_calls_are_throttled() -> None:
    clock = FakeClock()
    dash = LiveDashboard(show=False, min_interval=0.25, clock=clock)
    for i in range(10):  # ten snapshots within 0.09 s: one redraw
        clock.t = i * 0.01
        dash(snap(requests=i))
    assert dash.updates == 1 and dash.last is not None and dash.last.requests == 9
    clock.t = 0.3
    dash(snap(requests=10))
    assert dash.updates == 2 and "10 (" in dash.stats.value


def test_finish_swaps_in_a_static_snapshot() -> None:
    run = tfp.load_run(SAMPLES / "baseline")
    dash = LiveDashboard(title="baseline", show=False)
    dash.update(snap())
    html = dash.finish(run)
    assert "<svg" in html and "<table" in html and "POST /tasks generate-pdf" in html
    assert "exact" in html and "1,381 requests" in html
    assert dash.finish(run) == ""  # only once
    assert html == static_html(run, title="baseline")


def test_finish_without_a_run_says_why() -> None:
    dash = LiveDashboard(title="x", show=False)
    dash.update(snap())
    html = dash.finish(None, error=KeyboardInterrupt())
    assert "run stopped (KeyboardInterrupt" in html and "412" in html


def test_live_view_outside_a_kernel() -> None:
    assert not in_kernel()
    assert live_view("t", 10.0) is None
    view = live_view("t", 10.0, force=True)
    assert isinstance(view, TerminalProgress)
    tester = tfp.LoadTester(tfp.Target("http://127.0.0.1:9"), live=False)
    assert tester._live_view(tfp.StressPlan.constant(1, rate=1), "x") is None


def test_terminal_progress_finish_ends_the_line() -> None:
    out = io.StringIO()
    progress = TerminalProgress(out)
    progress(snap())
    assert "peak (8s left)" in out.getvalue()
    assert progress.finish(None) == ""


KERNEL_CELLS = [
    "import taskforge_perf as tfp",
    """
with tfp.ReferenceTarget(seed=5, hash_iterations=1000) as target:
    tester = tfp.LoadTester(target, tfp.UserPool(count=3, email_prefix="dash"), seed=5)
    run = tester.run_sync(duration=1.5, concurrency=4, name="sync")   # the load in a thread
""",
    """
with tfp.ReferenceTarget(seed=6, hash_iterations=1000) as target:
    tester = tfp.LoadTester(target, tfp.UserPool(count=3, email_prefix="quiet"), live=False)
    quiet = tester.run_sync(duration=0.5, concurrency=2)
print(quiet.meta["stopped"])
""",
]


@pytest.mark.timeout(90)
def test_in_a_kernel_the_dashboard_ends_as_static_html(tmp_path: Path) -> None:
    """run_sync drives the dashboard from its own thread; the saved cell still ends up holding
    the static snapshot (no widget left), and live=False shows nothing."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src.strip()) for src in KERNEL_CELLS])
    nb = execute_notebook(nb, cwd=tmp_path, timeout=80)
    sync_out, quiet_out = nb.cells[1].outputs, nb.cells[2].outputs
    data = [o.get("data", {}) for o in sync_out]
    assert not any("application/vnd.jupyter.widget-view+json" in d for d in data)
    html = [d["text/html"] for d in data if "text/html" in d]
    assert len(html) == 1 and "tfp-snapshot" in html[0] and "<svg" in html[0]
    assert [o.get("text") for o in quiet_out] == ["completed\n"]


def test_rows_that_do_not_apply_are_hidden() -> None:
    no_ws = snapshot_html(snap(ws_open=0, ws_completed=0, tasks_created=40))
    assert "WebSocket" not in no_ws.replace("no WebSocket asked", "") and "0 / 0" not in no_ws
    assert "completion not tracked" in no_ws and "40" in no_ws
    assert "WebSocket" in snapshot_html(snap(ws_open=0, ws_completed=0), websockets=True)
    assert "Not sent (0)" in snapshot_html(snap())  # counted, even when 0
    health = snapshot_html(snap(lag_p99_ms=2.5, cpu=0.42))
    assert "Generator health" in health and "2.5 ms" in health and "42% of a core" in health


def test_one_phase_runs_have_one_countdown() -> None:
    dash = LiveDashboard(show=False)
    dash.update(snap(phase="load", elapsed_s=12.0, planned_s=60.0, phase_remaining_s=48.0))
    assert "left in phase" not in dash.status.value and "48 s left" in dash.status.value
    dash.update(snap(phase="warmup", elapsed_s=12.0, planned_s=60.0, phase_remaining_s=8.0))
    assert "8 s left in phase" in dash.status.value


def test_trends_of_rate_asked_vs_achieved_and_p95() -> None:
    plan = tfp.StressPlan([tfp.Phase("a", 30, rate=100), tfp.Phase("b", 30, rate=300)])
    dash = LiveDashboard(show=False, plan=plan, websockets=False)
    for i in range(1, 8):
        dash.update(snap(elapsed_s=i * 5.0, requests=i * 500, errors={}, approx_p95_ms=10.0 + i))
    trends = dash.trends.value
    assert trends.count("<svg") == 2 and "stroke-dasharray" in trends  # asked rate dashed
    assert "vs asked 300/s" in trends and "~p95 latency" in trends and "17.0 ms" in trends
    assert [a for _, _, a, _ in dash.history][:2] == [100.0, 100.0] and dash.history[-1][2] == 300.0


def test_static_snapshot_draws_planned_and_response_time() -> None:
    from taskforge_perf.dashboard_static import _chart

    run = tfp.load_run(SAMPLES / "baseline")
    spec = str(_chart(run).to_dict())
    assert "'planned'" in spec and "response time" in spec


def test_terminal_progress_line_fits_120_columns() -> None:
    from taskforge_perf.live import format_snapshot

    wide = snap(
        elapsed_s=1234.5,
        planned_s=3600.0,
        phase="a rather long phase name (400/s)",
        requests=123_456_789,
        late=99_999,
        errors={"timeout": 12_345, "dropped": 6_789, "cancelled": 1},
        saturated="machine: waiting for a CPU (machine busy): event-loop lag p99 16.3 ms > 5 ms",
    )
    assert len(format_snapshot(wide)) <= 120
    assert "0 in flight" not in format_snapshot(snap(in_flight=0))


def test_per_endpoint_table_and_response_time_are_shown() -> None:
    html = snapshot_html(
        snap(
            approx_resp_p95_ms=310.0,
            endpoints={"GET /health": (1_200, 0, 1.5), "POST /tasks generate-pdf": (3_800, 12, None)},
        )
    )
    assert "~p95 response time" in html and "310.0 ms" in html
    assert "tfp-endpoints" in html and "GET /health" in html and "1,200" in html and "1.5 ms" in html
    assert "POST /tasks generate-pdf" in html and "3,800" in html and ">12<" in html and "– ms" in html
    assert "tfp-endpoints" not in snapshot_html(snap())  # no table before anything was sent


def test_trends_draw_response_time_dashed_beside_latency() -> None:
    dash = LiveDashboard(show=False, websockets=False)
    for i in range(1, 6):
        dash.update(snap(elapsed_s=i * 5.0, errors={}, approx_p95_ms=10.0, approx_resp_p95_ms=40.0 + i))
    assert len(dash.resp_history) == 5
    assert "response time 45.0 ms (dashed)" in dash.trends.value


def test_merged_shard_snapshots_add_up_per_endpoint() -> None:
    from taskforge_perf.engine.merge import aggregate

    a = snap(endpoints={"GET /health": (10, 1, 2.0)}, approx_resp_p95_ms=5.0)
    b = snap(endpoints={"GET /health": (5, 0, 3.0), "GET /metrics": (2, 0, None)}, approx_resp_p95_ms=None)
    merged = aggregate({0: a, 1: b})
    assert merged.endpoints == {"GET /health": (15, 1, 3.0), "GET /metrics": (2, 0, None)}
    assert merged.approx_resp_p95_ms == 5.0
