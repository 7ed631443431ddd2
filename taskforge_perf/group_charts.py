"""Altair charts of user groups, sessions and capacity searches, from pre-aggregated frames."""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl

from taskforge_perf.charts import _title, data_values


def groups(table: pl.DataFrame, *, metrics: tuple[str, ...] = ("p50_ms", "p95_ms", "p99_ms")) -> alt.Chart:
    """Latency percentiles per user group (bars) from ``run.by_group()``, with each group's rps."""
    df = table.with_columns(pl.col("group").cast(pl.String).fill_null("(none)"))
    long = df.unpivot(index=["group", "rps"], on=list(metrics), variable_name="metric", value_name="ms")
    return (
        alt.Chart(data_values(long))
        .mark_bar()
        .encode(
            x=alt.X("metric:N", title=None, sort=list(metrics)),
            y=alt.Y("ms:Q", title="latency (ms)"),
            color=alt.Color("metric:N", sort=list(metrics)),
            column=alt.Column("group:N", title="group"),
            tooltip=[
                "group:N",
                "metric:N",
                alt.Tooltip("ms:Q", format=".1f"),
                alt.Tooltip("rps:Q", format=".1f"),
            ],
        )
        .properties(width=120, height=220, title=_title("Latency per user group"))
    )


def sessions(timeline: pl.DataFrame) -> alt.Chart:
    """Concurrent sessions over time (``run.sessions_timeline()``)."""
    return (
        alt.Chart(data_values(timeline.select("t_s", "active")))
        .mark_area(line=True, opacity=0.4, interpolate="step-after")
        .encode(
            x=alt.X("t_s:Q", title="seconds since run start"),
            y=alt.Y("active:Q", title="concurrent sessions"),
            tooltip=["t_s:Q", "active:Q"],
        )
        .properties(width=600, height=200, title=_title("Concurrent sessions"))
    )


def capacity(steps: pl.DataFrame, *, slo_ms: float | None = None, knee: float | None = None) -> Any:
    """A capacity search: p95 latency (line) and achieved rate against the offered rate, each step
    coloured by whether it held the SLO; the SLO's latency bound and the knee as rules."""
    df = steps.select("rate", "achieved_rps", "p95_ms", "passed").with_columns(
        pl.when(pl.col("passed")).then(pl.lit("holds")).otherwise(pl.lit("breaks")).alias("slo")
    )
    base = alt.Chart(data_values(df)).encode(x=alt.X("rate:Q", title="offered rate (req/s)"))
    line = base.mark_line(color="#888").encode(y=alt.Y("p95_ms:Q", title="p95 latency (ms)"))
    points = base.mark_point(filled=True, size=70).encode(
        y="p95_ms:Q",
        color=alt.Color("slo:N", scale=alt.Scale(domain=["holds", "breaks"], range=["#2a9d8f", "#e76f51"])),
        tooltip=["rate:Q", "achieved_rps:Q", "p95_ms:Q", "slo:N"],
    )
    layers: list[alt.Chart] = [line, points]
    if slo_ms is not None:
        rule = pl.DataFrame({"ms": [slo_ms]})
        layers.append(
            alt.Chart(data_values(rule)).mark_rule(strokeDash=[4, 4], color="#e76f51").encode(y="ms:Q")
        )
    if knee is not None:
        kr = pl.DataFrame({"rate": [knee]})
        layers.append(
            alt.Chart(data_values(kr)).mark_rule(strokeDash=[2, 2], color="#264653").encode(x="rate:Q")
        )
    return alt.layer(*layers).properties(width=600, height=280, title=_title("Capacity search"))
