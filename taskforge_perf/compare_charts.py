"""The chart of a comparison's relative changes (``Comparison.delta_chart``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import altair as alt

    from taskforge_perf.compare import Comparison


def delta_chart(cmp: Comparison) -> alt.LayerChart:
    """Relative change per group and metric with its interval; dashed: 0, the tolerance and the
    allowed regression. The gated metric is drawn filled, the others hollow."""
    import altair as alt

    from taskforge_perf.charts import _title, data_values

    keys = list(cmp.by)
    group = (
        pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator=" · ") if keys else pl.lit("all")
    )
    t = cmp.table()
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
    base = alt.Chart(data_values(long)).encode(
        y=alt.Y("group:N", title=None),
        yOffset=alt.YOffset("metric:N"),
        color=alt.Color("metric:N", title="metric"),
    )
    bars = base.mark_rule().encode(x=alt.X("lo:Q", title="Candidate vs baseline (%)"), x2="hi:Q")
    points = base.mark_point(filled=True, size=50).encode(
        x="rel:Q",
        shape=alt.Shape("decision:N", title="gate"),
        tooltip=[
            "group:N",
            "metric:N",
            alt.Tooltip("rel:Q", format="+.1f", title="%"),
            alt.Tooltip("lo:Q", format="+.1f"),
            alt.Tooltip("hi:Q", format="+.1f"),
            "decision:N",
        ],
    )
    thr, tol = cmp.gate.max_regression * 100, cmp.gate.tolerance * 100
    rules = (
        alt.Chart(data_values(pl.DataFrame({"x": [0.0, tol, thr]})))
        .mark_rule(strokeDash=[4, 3], color="#888")
        .encode(x="x:Q")
    )
    level = 1 - 2 * cmp.gate.alpha
    return alt.LayerChart(
        layer=[rules, bars, points],
        title=_title(
            "Percentile change, candidate vs baseline",
            f"{level:.0%} intervals; dashed: 0, tolerance {tol:g}%, allowed {thr:g}%; gate: {g}",
        ),
        width=560,
    )
