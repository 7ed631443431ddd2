"""Errors over time by kind (``run.charts.errors()``): what failed, when."""

from __future__ import annotations

import altair as alt
import polars as pl

from taskforge_perf import analysis
from taskforge_perf.analysis import Frame
from taskforge_perf.chart_style import finish
from taskforge_perf.charts import _HEIGHT, _TIME_AXIS, _WIDTH, _span_s, _title, data_values, fit_window
from taskforge_perf.schema import TESTER_SIDE_KINDS

__all__ = ["errors_over_time"]


def errors_over_time(
    events: Frame,
    *,
    window_s: float = 1.0,
    start_s: float | None = None,
    end_s: float | None = None,
) -> alt.Chart:
    """Target-side errors per second by kind (http_5xx, timeout, reset, ...), stacked bars per
    window (y and y2 computed, never a floating stack). Tester-side kinds (not sent) are left out."""
    lf = analysis._lazy(events).filter(
        pl.col("error").is_not_null() & ~pl.col("error").cast(pl.String).is_in(list(TESTER_SIDE_KINDS))
    )
    kinds = lf.select(pl.col("error").cast(pl.String).unique()).collect().to_series().sort().to_list()
    w = fit_window(_span_s(analysis._lazy(events), "t_start"), window_s, max(len(kinds), 1))
    w_ns = int(round(w * 1e9))
    lo = 0.0 if start_s is None else start_s
    counts = (
        lf.group_by(kind=pl.col("error").cast(pl.String), _w=pl.col("t_start") // w_ns)
        .agg(pl.len().alias("n"))
        .collect()
        .with_columns(t_s=pl.col("_w").cast(pl.Float64) * w)
    )
    if counts.height:
        a = pl.max_horizontal(pl.col("t_s"), pl.lit(lo))
        b = pl.col("t_s") + w if end_s is None else pl.min_horizontal(pl.col("t_s") + w, pl.lit(end_s))
        counts = counts.with_columns(rate=pl.col("n") / pl.max_horizontal(b - a, pl.lit(w / 20)))
        counts = (
            counts.sort("t_s", "kind")
            .with_columns(y1=pl.col("rate").cum_sum().over("t_s"), t_end=pl.col("t_s") + w)
            .with_columns(y0=pl.col("y1") - pl.col("rate"))
            .select("kind", "t_s", "t_end", "n", "rate", "y0", "y1")
        )
    else:
        counts = pl.DataFrame(
            schema={
                "kind": pl.String,
                "t_s": pl.Float64,
                "t_end": pl.Float64,
                "n": pl.UInt32,
                "rate": pl.Float64,
                "y0": pl.Float64,
                "y1": pl.Float64,
            }
        )
    chart = (
        alt.Chart(data_values(counts))
        .mark_bar()
        .encode(
            x=_TIME_AXIS,
            x2="t_end:Q",
            y=alt.Y("y0:Q", title="Errors (per s)"),
            y2="y1:Q",
            color=alt.Color("kind:N", title="error", scale=alt.Scale(scheme="reds")),
            tooltip=["kind:N", alt.Tooltip("t_s:Q", title="s"), alt.Tooltip("n:Q", title="errors")],
        )
        .properties(
            title=_title(
                "Errors over time by kind",
                f"window {w:g} s; target-side errors only" + ("" if kinds else " — none in this run"),
            ),
            width=_WIDTH,
            height=_HEIGHT * 2 // 3,
        )
    )
    return finish(chart)
