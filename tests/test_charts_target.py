"""The target's own metrics charted beside client latency (pure: no sockets)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from taskforge_perf.charts_target import default_metrics, target_series, target_vs_client
from taskforge_perf.results import TARGET_METRICS_SCHEMA
from taskforge_perf.synthetic import synthetic_events

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"


def _tm(rows: list[tuple[int, str, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TARGET_METRICS_SCHEMA, orient="row")


def test_counters_become_rates_and_gauges_stay_values() -> None:
    s = 1_000_000_000
    tm = _tm(
        [
            (0, "jobs_total", "", 0.0),
            (1 * s, "jobs_total", "", 10.0),
            (2 * s, "jobs_total", "", 30.0),
            (0, "tasks_queued", 'type="pdf"', 4.0),
            (1 * s, "tasks_queued", 'type="pdf"', 7.0),
            (1 * s, "lat_bucket", 'le="0.1"', 3.0),
        ]
    )
    out = target_series(tm, ["jobs_total", "tasks_queued"], window_s=1.0)
    rates = out.filter(pl.col("series") == "jobs_total")
    assert rates["t_s"].to_list() == [1.0, 2.0] and rates["value"].to_list() == [10.0, 20.0]
    queued = out.filter(pl.col("series") == 'tasks_queued{type="pdf"}')
    assert queued["value"].to_list() == [4.0, 7.0]
    assert default_metrics(tm) == ["tasks_queued"]  # histogram parts and counters left out


def test_chart_has_client_and_target_panels() -> None:
    events = synthetic_events(2_000, seed=3)
    t_max = int(events["t_start"].max())
    tm = _tm([(t, "taskforge_tasks_queued", 'type="generate-pdf"', float(i)) for i, t in
              enumerate(range(0, t_max, t_max // 20))])  # fmt: skip
    spec = target_vs_client(events, tm, metric="p95").to_dict()
    top, bottom = spec["vconcat"]
    assert top["encoding"]["y"]["title"] == "client p95 latency (ms)"
    data = bottom["data"]["values"]
    assert {d["series"] for d in data} == {'taskforge_tasks_queued{type="generate-pdf"}'}
    assert len(data) <= 21
    with pytest.raises(ValueError, match="metric must be"):
        target_vs_client(events, tm, metric="p42")
    empty = target_vs_client(events, pl.DataFrame(schema=TARGET_METRICS_SCHEMA)).to_dict()
    assert empty["vconcat"][1]["title"]["subtitle"] == "no target metrics recorded"


@pytest.mark.timeout(240)
def test_report_shows_the_target_metrics_section(tmp_path: Path) -> None:
    import taskforge_perf as tfp

    base = tfp.load_run(SAMPLES / "baseline", lazy=False)
    t_max = int(base.events["t_end"].max())
    tm = _tm([(t, "taskforge_tasks_queued", 'type="resize-image"', float(i % 7)) for i, t in
              enumerate(range(0, t_max, t_max // 30))])  # fmt: skip
    meta = dict(base.meta, target_metrics={"url": "http://127.0.0.1:1/metrics", "scrapes": 30, "failures": 0})
    folder = tfp.Run(base.events, base.ws_events, meta, target_metrics=tm).save(tmp_path / "with-target")
    html = tfp.report(folder, output=tmp_path / "r.html", progress=False).read_text()
    assert "The target&#39;s own metrics" in html or "The target's own metrics" in html
    assert "30 scrapes, 0 failed" in html
    plain = tfp.report(SAMPLES / "baseline", output=tmp_path / "p.html", progress=False).read_text()
    assert "own metrics" not in plain
