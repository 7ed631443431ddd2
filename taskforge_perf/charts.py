"""Altair charts of runs: functions from a frame to a chart, never displayed here.

Every chart's data is aggregated with Polars first and embedded as inline values (no pandas, no
MaxRowsError): at most ``MAX_ROWS`` rows per chart, coarsening time windows or keeping the worst
groups when needed. Titles name the measure; axes carry units (ms, req/s, s).

>>> from taskforge_perf.synthetic import synthetic_events
>>> chart = throughput(synthetic_events(10_000, seed=1))
>>> chart.to_dict()["mark"]["type"]
'line'
"""

from __future__ import annotations

import math

import altair as alt
import polars as pl

from taskforge_perf import analysis
from taskforge_perf.analysis import By, Frame

__all__ = [
    "MAX_ROWS",
    "latency_over_time",
    "percentiles",
    "task_latency_hist",
    "throughput",
    "user_endpoint_heatmap",
    "ws_connections",
]

#: Most rows any chart embeds (Altair's MaxRowsError threshold).
MAX_ROWS = 5_000
_WIDTH, _HEIGHT = 640, 280
_NICE = (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
_TIME_AXIS = alt.X("t_s:Q", title="Time since start (s)")


def data_values(df: pl.DataFrame) -> alt.Data:
    """Inline chart data from a (small) frame: JSON-safe values, non-finite floats as null."""
    if df.height > MAX_ROWS:
        raise ValueError(f"chart data has {df.height} rows (> {MAX_ROWS}); aggregate it first")
    fix = [
        pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c) for c, t in df.schema.items() if t.is_float()
    ]
    cats = [pl.col(c).cast(pl.String) for c, t in df.schema.items() if isinstance(t, pl.Categorical)]
    return alt.Data(values=df.with_columns(*fix, *cats).to_dicts())


def _title(text: str, subtitle: str | None = None) -> alt.TitleParams:
    return alt.TitleParams(text=text, subtitle=subtitle or "", anchor="start")


def _span_s(lf: pl.LazyFrame, col: str) -> float:
    row = lf.select(lo=pl.col(col).min(), hi=pl.col(col).max()).collect().row(0)
    return 0.0 if row[0] is None else (row[1] - row[0]) / 1e9


def fit_window(span_s: float, window_s: float, series: int, budget: int = MAX_ROWS) -> float:
    """The smallest nice window >= ``window_s`` keeping ``series`` lines within ``budget`` rows."""
    need = (span_s + 1e-9) * max(series, 1) / max(budget - 2 * max(series, 1), 1)
    if window_s >= need:
        return window_s
    for w in _NICE:
        if w >= need:
            return float(w)
    return float(math.ceil(need))


def latency_over_time(
    events: Frame,
    *,
    window_s: float = 1.0,
    phases: pl.DataFrame | None = None,
    metric: str = "p95",
    by: str = "endpoint",
) -> alt.LayerChart:
    """``metric`` (p50/p95/p99) of latency (solid) and response time (dashed) per window and group,
    over shaded phase bands (``phases``: name, start_s, end_s; derived from the events if None)."""
    if metric not in ("p50", "p95", "p99"):
        raise ValueError(f"metric must be 'p50', 'p95' or 'p99' (got {metric!r})")
    lf = analysis._lazy(events)
    groups = lf.select(pl.col(by).n_unique()).collect().item()
    w = fit_window(_span_s(lf, "t_start"), window_s, 2 * groups)
    tl = analysis.timeline(lf, window_s=w, by=(by,))
    long = pl.concat(
        [
            tl.select(by, "t_s", measure=pl.lit("latency"), ms=pl.col(f"{metric}_ms")),
            tl.select(by, "t_s", measure=pl.lit("response time"), ms=pl.col(f"resp_{metric}_ms")),
        ]
    )
    if phases is None:
        phases = analysis.phase_spans(lf)
    bands = (
        alt.Chart(data_values(phases.select(pl.col("name").cast(pl.String), "start_s", "end_s")))
        .mark_rect(opacity=0.08)
        .encode(
            x="start_s:Q",
            x2="end_s:Q",
            color=alt.Color("name:N", legend=None),
            tooltip=[alt.Tooltip("name:N", title="phase")],
        )
    )
    labels = bands.mark_text(align="left", baseline="top", dx=3, dy=3).encode(
        text="name:N", y=alt.value(0), color=alt.value("#555")
    )
    lines = (
        alt.Chart(data_values(long))
        .mark_line(interpolate="step-after")
        .encode(
            x=_TIME_AXIS,
            y=alt.Y("ms:Q", title=f"{metric} (ms)"),
            color=alt.Color(f"{by}:N", title=by),
            strokeDash=alt.StrokeDash("measure:N", title="measure"),
            tooltip=[
                f"{by}:N",
                "measure:N",
                alt.Tooltip("t_s:Q", title="s"),
                alt.Tooltip("ms:Q", format=".2f", title="ms"),
            ],
        )
    )
    return (
        alt.layer(bands, labels, lines)
        .resolve_scale(color="independent")
        .properties(
            title=_title(f"Latency {metric} over time per {by}", f"window {w:g} s; dashed: response time"),
            width=_WIDTH,
            height=_HEIGHT,
        )
    )


_TAIL_TICKS = [1, 2, 10, 100, 1_000, 10_000, 100_000]
_TAIL_LABEL = "datum.value <= 1 ? '0%' : format(100 - 100 / datum.value, '.3~f') + '%'"


def percentiles(data: Frame, *, by: By = None, measure: str = "both") -> alt.Chart:
    """The HDR percentile spectrum: ms against percentile on a log ``1/(1-q)`` axis.

    ``data`` is raw events (the spectrum is computed) or a ``percentile_spectrum`` frame, which may
    carry a ``run`` column (drawn as colour). ``measure``: "latency", "response" or "both".
    """
    spec = data.collect() if isinstance(data, pl.LazyFrame) else data
    if "inverse_tail" not in spec.columns:
        spec = analysis.percentile_spectrum(spec, by=by)
    keys = [
        c
        for c in spec.columns
        if c not in ("percentile", "inverse_tail", "latency_ms", "response_ms", "count")
    ]
    cols = {"latency": ["latency_ms"], "response": ["response_ms"]}.get(
        measure, ["latency_ms", "response_ms"]
    )
    long = spec.unpivot(
        cols, index=[*keys, "percentile", "inverse_tail"], variable_name="measure", value_name="ms"
    ).with_columns(pl.col("measure").replace({"latency_ms": "latency", "response_ms": "response time"}))
    series = (
        pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator=" · ") if keys else pl.lit("all")
    )
    long = long.with_columns(series=series)
    return (
        alt.Chart(data_values(long))
        .mark_line(point=alt.OverlayMarkDef(size=12))
        .encode(
            x=alt.X(
                "inverse_tail:Q",
                title="Percentile",
                scale=alt.Scale(type="log"),
                axis=alt.Axis(values=_TAIL_TICKS, labelExpr=_TAIL_LABEL),
            ),
            y=alt.Y("ms:Q", title="Latency (ms)"),
            color=alt.Color("series:N", title=" · ".join(keys) or "series"),
            strokeDash=alt.StrokeDash("measure:N", title="measure"),
            tooltip=[
                "series:N",
                "measure:N",
                alt.Tooltip("percentile:Q", format=".3f"),
                alt.Tooltip("ms:Q", format=".2f"),
            ],
        )
        .properties(
            title=_title("Latency by percentile", "HDR view; dashed: response time"),
            width=_WIDTH,
            height=_HEIGHT,
        )
    )


def user_endpoint_heatmap(events: Frame, *, metric: str = "p95_ms") -> alt.Chart:
    """Latency ``metric`` per user x endpoint; keeps the slowest users if there are too many."""
    levels = {"p50_ms": 0.5, "p90_ms": 0.9, "p95_ms": 0.95, "p99_ms": 0.99}
    if metric not in levels:
        raise ValueError(f"metric must be one of {sorted(levels)} (got {metric!r})")
    table = (
        analysis._lazy(events)
        .filter(analysis.answered_expr())  # the rows every latency figure covers
        .group_by("user", "endpoint")
        .agg(
            pl.len().alias("count"),
            (
                (pl.col("t_end") - pl.col("t_start")).quantile(levels[metric], analysis.QUANTILE_METHOD) / 1e6
            ).alias(metric),
        )
        .collect()
    )
    n_ep = max(table["endpoint"].n_unique(), 1)
    subtitle = None
    if table.height > MAX_ROWS:
        keep = MAX_ROWS // n_ep
        worst = table.group_by("user").agg(pl.col(metric).max()).sort(metric, descending=True)
        table = table.filter(pl.col("user").is_in(worst["user"].head(keep).implode()))
        subtitle = f"the {keep} users with the highest {metric}"
    table = table.select("user", "endpoint", "count", metric)
    return (
        alt.Chart(data_values(table))
        .mark_rect()
        .encode(
            x=alt.X("endpoint:N", title="Endpoint"),
            y=alt.Y("user:N", title="User", sort="ascending"),
            color=alt.Color(
                f"{metric}:Q",
                title=metric.replace("_ms", " (ms)"),
                scale=alt.Scale(scheme="orangered"),
            ),
            tooltip=["user:N", "endpoint:N", "count:Q", alt.Tooltip(f"{metric}:Q", format=".2f")],
        )
        .properties(
            title=_title(f"Latency {metric.removesuffix('_ms')} per user and endpoint", subtitle),
            width=_WIDTH,
        )
    )


def throughput(events: Frame, *, window_s: float = 1.0) -> alt.Chart:
    """Answered requests per second and target-side errors per second over time."""
    lf = analysis._lazy(events)
    w = fit_window(_span_s(lf, "t_start"), window_s, 2)
    tl = analysis.timeline(lf, window_s=w, by=None)
    long = pl.concat(
        [
            tl.select("t_s", series=pl.lit("requests"), rate=pl.col("rps")),
            tl.select("t_s", series=pl.lit("errors"), rate=pl.col("errors") / w),
        ]
    )
    return (
        alt.Chart(data_values(long))
        .mark_line(interpolate="step-after")
        .encode(
            x=_TIME_AXIS,
            y=alt.Y("rate:Q", title="Throughput (req/s)"),
            color=alt.Color(
                "series:N",
                title="series",
                scale=alt.Scale(domain=["requests", "errors"], range=["#4c78a8", "#e45756"]),
            ),
            tooltip=[
                "series:N",
                alt.Tooltip("t_s:Q", title="s"),
                alt.Tooltip("rate:Q", format=".1f", title="req/s"),
            ],
        )
        .properties(
            title=_title("Throughput and errors over time", f"window {w:g} s"),
            width=_WIDTH,
            height=_HEIGHT,
        )
    )


def task_latency_hist(ws_events: Frame, *, bins: int = 40, status: str = "completed") -> alt.Chart:
    """Distribution of task end-to-end latency (created -> first ``status`` message), per type."""
    if not 1 <= bins <= MAX_ROWS // 20:
        raise ValueError(f"bins must be within 1..{MAX_ROWS // 20} (got {bins})")
    lf = analysis._lazy(ws_events)
    first = (
        lf.filter(
            (pl.col("kind").cast(pl.String) == "message")
            & (pl.col("status").cast(pl.String) == status)
            & pl.col("task_id").is_not_null()
        )
        .group_by("task_id")
        .agg(
            pl.col("since_created_ns").sort_by("t").first(),
            pl.col("task_type").cast(pl.String).drop_nulls().first(),
        )
        .with_columns(s=pl.col("since_created_ns").cast(pl.Float64) / 1e9)
        .collect()
    )
    lo, hi = first.select(
        pl.col("s").min().fill_null(0.0).alias("lo"), pl.col("s").max().fill_null(1.0).alias("hi")
    ).row(0)
    width = max((hi - lo) / bins, 1e-9)
    hist = (
        first.with_columns(b=((pl.col("s") - lo) / width).floor().clip(0, bins - 1))
        .group_by("task_type", "b")
        .agg(pl.len().alias("tasks"))
        .with_columns(start_s=lo + pl.col("b") * width, end_s=lo + (pl.col("b") + 1) * width)
        .drop("b")
        .sort("task_type", "start_s")
    )
    return (
        alt.Chart(data_values(hist))
        .mark_bar()
        .encode(
            x=alt.X("start_s:Q", title=f"Created -> {status} (s)"),
            x2="end_s:Q",
            y=alt.Y("tasks:Q", title="Tasks", stack=True),
            color=alt.Color("task_type:N", title="task type"),
            tooltip=[
                "task_type:N",
                "tasks:Q",
                alt.Tooltip("start_s:Q", format=".2f"),
                alt.Tooltip("end_s:Q", format=".2f"),
            ],
        )
        .properties(
            title=_title(f"Task end-to-end latency (created -> {status})", f"{first.height} tasks"),
            width=_WIDTH,
            height=_HEIGHT,
        )
    )


def ws_connections(ws_events: Frame, *, window_s: float = 1.0) -> alt.Chart:
    """Open WebSocket connections over time, with drops and connect failures per window."""
    lf = analysis._lazy(ws_events)
    w = fit_window(_span_s(lf, "t"), window_s, 3)
    tl = analysis.ws_connections_timeline(lf, window_s=w)
    long = tl.unpivot(
        ["open", "dropped", "failed"], index="t_s", variable_name="series", value_name="connections"
    )
    return (
        alt.Chart(data_values(long))
        .mark_line(interpolate="step-after")
        .encode(
            x=_TIME_AXIS,
            y=alt.Y("connections:Q", title="Connections"),
            color=alt.Color("series:N", title="series"),
            tooltip=["series:N", alt.Tooltip("t_s:Q", title="s"), "connections:Q"],
        )
        .properties(
            title=_title("WebSocket connections over time", f"window {w:g} s; dropped/failed per window"),
            width=_WIDTH,
            height=_HEIGHT,
        )
    )
