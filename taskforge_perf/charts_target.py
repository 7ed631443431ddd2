"""The target's own metrics beside client-side latency: ``run.charts.target_vs_client()``.

One chart, two panels on the same time axis (seconds since the run's start): the client's latency
percentile per window on top, the target's series below (gauges as scraped, counters ``*_total``
as per-second rates), so "p99 rose when the queue grew" reads off one picture.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import altair as alt
import polars as pl

from taskforge_perf import analysis
from taskforge_perf.analysis import Frame
from taskforge_perf.chart_style import finish
from taskforge_perf.charts import _HEIGHT, _TIME_AXIS, _WIDTH, _span_s, _title, data_values, fit_window

#: Default target series: names that look like queues, backlogs or work in progress.
DEFAULT_PATTERN = re.compile(r"queue|queued|backlog|waiting|pending|in_?flight|active|connections")
_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count", "_created")
_RUNTIME = ("nodejs_", "process_", "python_", "go_")


def default_metrics(target_metrics: pl.DataFrame) -> list[str]:
    """Sample names charted when none are given: queue-like gauges, else request counters."""
    names = target_metrics["name"].unique().sort().to_list()
    # the runtime's own gauges (nodejs_active_handles, process_*) are not the application's queues
    plain = [n for n in names if not n.endswith(_HISTOGRAM_PARTS) and not n.startswith(_RUNTIME)]
    picked = [n for n in plain if DEFAULT_PATTERN.search(n)]
    return picked or [n for n in plain if n.endswith("requests_total")]


def target_series(
    target_metrics: pl.DataFrame, metrics: Sequence[str] | None = None, *, window_s: float = 1.0
) -> pl.DataFrame:
    """``t_s, series, value`` of the chosen sample names, counters (``*_total``) as rates per
    second, gauges as values; averaged per window so the chart stays within MAX_ROWS rows."""
    names = list(metrics) if metrics is not None else default_metrics(target_metrics)
    tm = target_metrics.filter(pl.col("name").is_in(names))
    if tm.is_empty():
        return pl.DataFrame(schema={"t_s": pl.Float64, "series": pl.String, "value": pl.Float64})
    braced = pl.concat_str(pl.col("name"), pl.lit("{"), pl.col("labels"), pl.lit("}"))
    label = pl.when(pl.col("labels") == "").then(pl.col("name")).otherwise(braced)
    tm = tm.with_columns(series=label).sort("series", "t")
    counter = pl.col("name").str.ends_with("_total")
    rate = (pl.col("value").diff() / (pl.col("t").diff() / 1e9)).over("series").clip(lower_bound=0)
    tm = tm.with_columns(value=pl.when(counter).then(rate).otherwise(pl.col("value")))
    tm = tm.filter(pl.col("value").is_not_null())
    n_series = tm["series"].n_unique()
    lo, hi = tm.select(lo=pl.col("t").min(), hi=pl.col("t").max()).row(0)
    w = fit_window((hi - lo) / 1e9, window_s, n_series)
    return (
        tm.with_columns(_w=(pl.col("t") / 1e9 / w).floor())
        .group_by("series", "_w")
        .agg(pl.col("value").mean())
        .select(t_s=pl.col("_w") * w, series="series", value="value")
        .sort("series", "t_s")
    )


def target_vs_client(
    events: Frame,
    target_metrics: pl.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    window_s: float = 1.0,
    metric: str = "p99",
    start_s: float | None = None,
    end_s: float | None = None,
) -> alt.VConcatChart:
    """Client-side ``metric`` (p50/p95/p99) latency over time above the target's own series.

    ``metrics``: sample names of ``run.target_metrics`` (default: queue-like gauges such as
    ``taskforge_tasks_queued``, else the request counters as rates).
    """
    if metric not in ("p50", "p95", "p99"):
        raise ValueError(f"metric must be p50, p95 or p99 (got {metric!r})")
    lf = analysis._lazy(events)
    w = fit_window(_span_s(lf, "t_start"), window_s, 1)
    tl = analysis.timeline(lf, window_s=w, by=None, start_s=start_s, end_s=end_s)
    tl = tl.select("t_s", ms=pl.col(f"{metric}_ms"))
    client = (
        alt.Chart(data_values(tl))
        .mark_line(interpolate="step-after")
        .encode(
            x=_TIME_AXIS,
            y=alt.Y("ms:Q", title=f"client {metric} latency (ms)"),
            tooltip=[alt.Tooltip("t_s:Q", title="s"), alt.Tooltip("ms:Q", format=".1f", title="ms")],
        )
        .properties(
            title=_title("Client latency and the target's own metrics", f"window {w:g} s"),
            width=_WIDTH,
            height=_HEIGHT // 2,
        )
    )
    series = target_series(target_metrics, metrics, window_s=window_s)
    note = "counters as rates per second" if series.height else "no target metrics recorded"
    target = (
        alt.Chart(data_values(series))
        .mark_line(interpolate="step-after")
        .encode(
            x=_TIME_AXIS,
            y=alt.Y("value:Q", title="target"),
            color=alt.Color("series:N", title="target series"),
            tooltip=[
                "series:N",
                alt.Tooltip("t_s:Q", title="s"),
                alt.Tooltip("value:Q", format=".2f"),
            ],
        )
        .properties(title=_title("Target (scraped /metrics)", note), width=_WIDTH, height=_HEIGHT // 2)
    )
    return finish(alt.vconcat(client, target).resolve_scale(x="shared"))
