"""The chart of a comparison's relative changes (``Comparison.delta_chart``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import altair as alt

    from taskforge_perf.compare import Comparison


def delta_chart(cmp: Comparison, *, table: pl.DataFrame | None = None) -> alt.LayerChart:
    """Relative change per group and metric with its interval; dashed: 0, the tolerance and the
    allowed regression. The gated metric is drawn filled, the others hollow. The x scale is set by
    the gate, not by the widest interval: intervals past it are clipped at the edge and marked.
    ``table``: ``cmp.table()`` unless given."""
    import altair as alt

    from taskforge_perf.chart_style import finish
    from taskforge_perf.charts import _title, data_values

    keys = list(cmp.by)
    group = (
        pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator=" · ") if keys else pl.lit("all")
    )
    t = cmp.table() if table is None else table
    g = cmp.gate.metric
    long = pl.concat(
        [
            t.select(
                group=group,
                metric=pl.lit(m),
                rel=pl.col(f"{m}_rel") * 100,
                lo=pl.col(f"{m}_rel_ci_low").cast(pl.Float64) * 100,
                hi=pl.col(f"{m}_rel_ci_high").cast(pl.Float64) * 100,
                decision=pl.col(f"{g}_decision") if m == g else pl.lit("shown, not gated"),
            )
            for m in cmp.metrics
        ]
    ).drop_nulls("rel")
    # The scale is set by the gate (a few times the allowed regression), not by one wild interval:
    # values past it are clamped to the edge and marked with a triangle and their real value.
    thr, tol = cmp.gate.max_regression * 100, cmp.gate.tolerance * 100
    # the estimates set the scale (with room for the gate's lines); intervals may run past it
    worst = float(long.select(pl.col("rel").abs().max()).item() or 0.0)
    edge = min(max(1.25 * worst, 3 * thr, 2 * tol, 20.0), 100.0)
    clamp = pl.col("lo", "hi", "rel").clip(-edge, edge)
    long = (
        long.with_columns(
            clamped=(pl.col("lo").abs() > edge) | (pl.col("hi").abs() > edge) | (pl.col("rel").abs() > edge),
            real=pl.format("{}% [{}, {}]", *[pl.col(c).round(1) for c in ("rel", "lo", "hi")]),
        )
        .with_columns(clamp)
        .with_columns(mark_x=pl.coalesce("hi", "rel"))
    )  # no interval: at the point
    x_scale = alt.Scale(domain=[-edge, edge], clamp=True)
    base = alt.Chart(data_values(long)).encode(
        y=alt.Y("group:N", title=None),
        yOffset=alt.YOffset("metric:N"),
        color=alt.Color("metric:N", title="metric"),
    )
    bars = base.mark_rule().encode(
        x=alt.X("lo:Q", title="Candidate vs baseline (%)", scale=x_scale), x2="hi:Q"
    )
    marks = base.transform_filter("datum.clamped").mark_text(text="▶ clipped", dx=4, align="left", fontSize=9)
    marks = marks.encode(x=alt.X("mark_x:Q", scale=x_scale), tooltip=["group:N", "metric:N", "real:N"])
    points = base.mark_point(filled=True, size=50).encode(
        x=alt.X("rel:Q", scale=x_scale),
        shape=alt.Shape("decision:N", title="gate"),
        tooltip=[
            "group:N",
            "metric:N",
            alt.Tooltip("rel:Q", format="+.1f", title="%"),
            alt.Tooltip("lo:Q", format="+.1f"),
            alt.Tooltip("hi:Q", format="+.1f"),
            "decision:N",
            alt.Tooltip("real:N", title="unclipped"),
        ],
    )
    rules = (
        alt.Chart(data_values(pl.DataFrame({"x": [0.0, tol, thr]})))
        .mark_rule(strokeDash=[4, 3], color="#888")
        .encode(x=alt.X("x:Q", scale=x_scale))
    )
    level = 1 - 2 * cmp.gate.alpha
    clipped = long.filter(pl.col("clamped")).height
    note = f"; {clipped} interval(s) past ±{edge:.0f}% clipped (▶)" if clipped else ""
    return finish(
        alt.LayerChart(
            layer=[rules, bars, points, marks],
            title=_title(
                "Percentile change, candidate vs baseline",
                f"{level:.0%} intervals; dashed: 0, tolerance {tol:g}%, allowed {thr:g}%; gate: {g}{note}",
            ),
            width=560,
        )
    )
