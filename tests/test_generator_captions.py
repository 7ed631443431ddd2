"""The live views and the end-of-run views say when the plan is draining and when the tester
itself was saturated (no network: snapshots and a sample run)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

import taskforge_perf as tfp
from taskforge_perf.dashboard import snapshot_html, static_html, status_text
from taskforge_perf.live import format_snapshot

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
SATURATED = {
    "saturated": True,
    "causes": ["tester"],
    "reasons": ["tester: event loop busy with the tester's own work: lag p99 274.3 ms > 5 ms"],
}


def snap(**kw: Any) -> tfp.Snapshot:
    base: dict[str, Any] = dict(
        elapsed_s=26.0,
        planned_s=25.0,
        phase="load",
        phase_remaining_s=0.0,
        rps=10.0,
        requests=5_000,
        in_flight=37,
        errors={},
        approx_p50_ms=1.0,
        approx_p95_ms=2.0,
        approx_p99_ms=3.0,
        tasks_created=0,
        ws_open=0,
        ws_completed=0,
        late=0,
    )
    base.update(kw)
    return tfp.Snapshot(**base)


def test_draining_is_said_by_the_progress_line_and_the_dashboard() -> None:
    s = snap(draining=37)
    assert "draining 37 in flight" in format_snapshot(s)
    assert "draining 37 in flight" in status_text(s)
    assert "draining" not in format_snapshot(snap()) and "draining" not in status_text(snap())


def test_a_saturated_tester_is_flagged_live() -> None:
    s = snap(saturated="event-loop lag p99 40 ms", lag_p99_ms=40.0, cpu=0.5)
    assert "TESTER SATURATED" in format_snapshot(s)
    assert "Tester saturated" in snapshot_html(s)
    assert "saturated" not in snapshot_html(snap()).lower()


def test_a_saturated_run_carries_the_warning_in_its_views() -> None:
    run = tfp.load_run(SAMPLES / "baseline")
    assert not run.generator_saturated and run.generator_warning() is None
    assert "queueing" not in static_html(run)
    meta = copy.deepcopy(run.meta)
    meta["generator"] = SATURATED
    hot = tfp.Run(run.events, run.ws_events, meta)
    assert hot.generator_saturated
    warning = hot.generator_warning()
    assert warning is not None and "these numbers include the tester's own queueing" in warning
    assert "lag p99 274.3 ms" in warning
    assert "tester&#x27;s own queueing" in static_html(hot) or "tester's own queueing" in static_html(hot)
    assert hot.health.height == 0  # a run without health rows still has the frame (empty)


@pytest.mark.timeout(170)
def test_the_report_of_a_saturated_run_says_so(tmp_path: Path) -> None:
    from taskforge_perf.report import report

    run = tfp.load_run(SAMPLES / "baseline")
    meta = copy.deepcopy(run.meta)
    meta["generator"] = SATURATED
    folder = tfp.Run(run.events, run.ws_events, meta).save(tmp_path / "hot")
    html = Path(report(folder, output=tmp_path / "hot.html", progress=False)).read_text(encoding="utf-8")
    assert "these numbers include the tester" in html and "lag p99 274.3 ms" in html
