"""Altair charts of runs: functions from a frame to a chart, never displayed here.

Every chart's data is aggregated with Polars first and embedded as inline values (no pandas, no
MaxRowsError): at most ``MAX_ROWS`` rows per chart, coarsening time windows or keeping the worst
groups when needed. Titles name the measure; axes carry units (ms, req/s, s).

>>> from taskforge_perf.synthetic import synthetic_events
>>> chart = throughput(synthetic_events(10_000, seed=1))
>>> len(chart.to_dict()["vconcat"])  # answered/s above, errors/s on their own axis below
2
"""

from __future__ import annotations

import math

import altair as alt
import polars as pl

from taskforge_perf import analysis
from taskforge_perf.analysis import By, Frame
from taskforge_perf.chart_style import (
    DASHES,
    PALETTE,
    close_steps,
    finish,
    line_legend,
    natural_key,
    subtitle_lines,
    top_groups,
)

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
    lines = subtitle_lines(subtitle) if subtitle else [""]
    return alt.TitleParams(text=text, subtitle=lines[0] if len(lines) == 1 else lines, anchor="start")


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


def _band_layers(phases: pl.DataFrame | None) -> list[alt.Chart]:
    if phases is None or phases.height == 0:
        return []
    bands = (
        alt.Chart(data_values(phases.select(pl.col("name").cast(pl.String), "start_s", "end_s")))
        .mark_rect(opacity=0.07, color=PALETTE["planned"], stroke="#ffffff", strokeWidth=2)
        .encode(x="start_s:Q", x2="end_s:Q", tooltip=[alt.Tooltip("name:N", title="phase")])
    )
    labels = bands.mark_text(align="left", baseline="top", dx=3, dy=3, color="#555").encode(
        text="name:N", y=alt.value(0)
    )
    return [bands, labels]


def latency_over_time(
    events: Frame,
    *,
    window_s: float = 1.0,
    phases: pl.DataFrame | None = None,
    metric: str = "p95",
    by: str = "endpoint",
    top: int = 5,
    start_s: float | None = None,
    end_s: float | None = None,
) -> alt.VConcatChart:
    """``metric`` (p50/p95/p99) of latency and of response time per window, one panel each, for the
    ``top`` busiest groups (the rest drawn as "other"), over the plan's phase bands (``phases``:
    name, start_s, end_s, e.g. ``chart_style.plan_bands(run.meta)``; no bands if None)."""
    if metric not in ("p50", "p95", "p99"):
        raise ValueError(f"metric must be 'p50', 'p95' or 'p99' (got {metric!r})")
    lf, groups = top_groups(analysis._lazy(events), by, top)
    w = fit_window(_span_s(lf, "t_start"), window_s, 2 * groups)
    tl = analysis.timeline(lf, window_s=w, by=(by,), start_s=start_s, end_s=end_s)
    panels = []
    for measure, col in (("Latency", f"{metric}_ms"), ("Response time", f"resp_{metric}_ms")):
        line = (
            alt.Chart(
                data_values(
                    close_steps(tl.select(pl.col(by).cast(pl.String), "t_s", ms=pl.col(col)), [by], w)
                )
            )
            .mark_line(interpolate="step-after")
            .encode(
                x=_TIME_AXIS,
                y=alt.Y("ms:Q", title=f"{measure} {metric} (ms)"),
                color=alt.Color(f"{by}:N", title=by, legend=alt.Legend(orient="bottom", columns=2)),
                tooltip=[f"{by}:N", alt.Tooltip("t_s:Q", title="s"), alt.Tooltip("ms:Q", format=".2f")],
            )
        )
        panels.append(
            alt.layer(*_band_layers(phases), line).properties(
                width=_WIDTH, height=_HEIGHT // 2, title=alt.TitleParams(measure, anchor="start", fontSize=12)
            )
        )
    shown = f"the {top} busiest {by}s + other" if groups > top else f"every {by}"
    return finish(
        alt.vconcat(*panels).properties(
            title=_title(
                f"{metric} latency and response time over time per {by}",
                f"window {w:g} s; {shown}; bands: the plan's phases. Response time counts from the "
                "scheduled start (includes queueing in the tester).",
            )
        )
    )


_TAIL_TICKS = [1, 2, 10, 100, 1_000, 10_000, 100_000]
_TAIL_LABEL = "datum.value <= 1 ? '0%' : format(100 - 100 / datum.value, '.3~f') + '%'"


def percentiles(data: Frame, *, by: By = None, measure: str = "both") -> alt.LayerChart:
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
    if "count" in spec.columns:
        # n·(1-q) >= 1: past that, the "percentile" is the maximum repeated, not a measurement
        spec = spec.filter(pl.col("inverse_tail") <= pl.col("count").cast(pl.Float64).clip(lower_bound=1))
    top = float(spec.select(pl.col("inverse_tail").max()).item() or 1.0)
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
    measures = [m for m in ("latency", "response time") if m in set(long["measure"].to_list())]
    # Legends draw line segments, the dash of each measure included (Vega draws dots by default).
    dash: dict[str, object] = {}
    if len(measures) > 1:
        dash["strokeDash"] = alt.StrokeDash(
            "measure:N",
            title="measure",
            scale=alt.Scale(domain=measures, range=[DASHES["solid"], DASHES["dashed"]]),
            legend=line_legend(symbolStrokeColor="#555"),
        )
    base = alt.Chart(data_values(long)).encode(
        x=alt.X(
            "inverse_tail:Q",
            title="Percentile",
            scale=alt.Scale(type="log"),
            axis=alt.Axis(values=[t for t in _TAIL_TICKS if t <= top] or [1], labelExpr=_TAIL_LABEL),
        ),
        y=alt.Y("ms:Q", title="Latency (ms)"),
    )
    colour = alt.Color("series:N", title=" · ".join(keys) or "series", scale=_series_scale(long))
    # The measured points on their own layer without a legend: a line mark with point markers
    # makes Vega-Lite draw every legend symbol as a dot (the dashes of the measures invisible).
    points = base.mark_circle(size=12, opacity=1).encode(color=colour.legend(None), detail="measure:N")
    line = base.mark_line().encode(
        color=colour.legend(line_legend()),
        **dash,
        tooltip=[
            "series:N",
            "measure:N",
            alt.Tooltip("percentile:Q", format=".3f"),
            alt.Tooltip("ms:Q", format=".2f"),
        ],
    )
    chart = alt.layer(line, points).properties(
        title=_title(
            "Latency by percentile",
            "HDR view; dashed: response time; drawn up to the percentile the sample size supports "
            "(n·(1-q) >= 1)",
        ),
        width=_WIDTH,
        height=_HEIGHT,
    )
    return finish(chart)


def _series_scale(long: pl.DataFrame) -> alt.Scale | alt.UndefinedType:
    """Baseline grey and candidate blue whenever the series are the two runs of a comparison."""
    names = set(long["series"].unique().to_list())
    if names and names <= {"baseline", "candidate"}:
        return alt.Scale(domain=["baseline", "candidate"], range=[PALETTE["baseline"], PALETTE["candidate"]])
    return alt.Undefined


def user_endpoint_heatmap(events: Frame, *, metric: str = "p95_ms", top: int = 40) -> alt.Chart:
    """Latency ``metric`` per user x endpoint for the ``top`` slowest users (all users if fewer);
    users sorted naturally (user2 before user10). The height stays bounded at any user count."""
    levels = {"p50_ms": 0.5, "p90_ms": 0.9, "p95_ms": 0.95, "p99_ms": 0.99}
    if metric not in levels:
        raise ValueError(f"metric must be one of {sorted(levels)} (got {metric!r})")
    if top < 1:
        raise ValueError(f"top must be >= 1 (got {top})")
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
        .with_columns(pl.col("user", "endpoint").cast(pl.String))
    )
    n_users = table["user"].n_unique()
    subtitle = f"{n_users} users"
    if n_users > top:
        worst = (
            table.group_by("user").agg(pl.col(metric).max()).sort(metric, "user", descending=[True, False])
        )
        table = table.filter(pl.col("user").is_in(worst["user"].head(top).implode()))
        subtitle = f"the {top} users (of {n_users}) with the highest {metric.removesuffix('_ms')}"
    order = sorted(table["user"].unique().to_list(), key=natural_key)
    table = table.select("user", "endpoint", "count", metric)
    chart = (
        alt.Chart(data_values(table))
        .mark_rect()
        .encode(
            x=alt.X("endpoint:N", title="Endpoint", axis=alt.Axis(labelAngle=-20)),
            y=alt.Y("user:N", title="User", sort=order),
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
            height=alt.Step(min(16, max(6, 640 // max(len(order), 1)))),
        )
    )
    return finish(chart)


def throughput(
    events: Frame,
    *,
    window_s: float = 1.0,
    start_s: float | None = None,
    end_s: float | None = None,
    planned: pl.DataFrame | None = None,
    phases: pl.DataFrame | None = None,
) -> alt.VConcatChart:
    """Answered requests per second (above) and target-side errors per second (below, own axis),
    each counted in the window in which it ended (``t_end``): what the target delivered when.

    ``start_s`` / ``end_s`` (the load's span on the run clock) make a partial first or last window
    count its real length, so the last window shows no false collapse. ``planned`` (``t_s``,
    ``rate``: ``chart_style.planned_rate(meta)``) is drawn dashed: asked vs achieved.
    """
    lf = analysis._lazy(events)
    w = fit_window(_span_s(lf, "t_start"), window_s, 2)
    # Answers are counted when they arrive (t_end), as the assessment's achieved rate is: a target
    # at capacity shows its capacity here, not the rate at which requests were sent to it.
    tl = analysis.timeline(lf, window_s=w, by=None, time_col="t_end", start_s=start_s, end_s=end_s)
    if end_s is None:  # no known end: the last window is partial, so drop it rather than mislead
        tl = tl.head(max(tl.height - 1, 1))
    else:  # a sliver of a window (< half) holds too few requests to say anything: dropped
        tl = tl.filter((pl.col("t_s") <= end_s - w / 2) | (pl.int_range(pl.len()) == 0))
        end_s = min(end_s, float(tl.select(pl.col("t_s").max()).item() or 0.0) + w)
    achieved = close_steps(tl.select("t_s", series=pl.lit("achieved"), rate=pl.col("rps")), [], w, end_s)
    frames = [achieved]
    if planned is not None and planned.height:
        frames.append(planned.select("t_s", series=pl.lit("planned"), rate=pl.col("rate")))
    domain, colours = ["achieved", "planned"], [PALETTE["ok"], PALETTE["planned"]]
    top = (
        alt.Chart(data_values(pl.concat(frames, how="vertical_relaxed")))
        .mark_line(interpolate="step-after")
        .encode(
            x=_TIME_AXIS,
            y=alt.Y("rate:Q", title="Answered (req/s)"),
            # one legend for both channels (same field and title): grey dashed "planned"
            color=alt.Color(
                "series:N", title="rate", scale=alt.Scale(domain=domain, range=colours), legend=line_legend()
            ),
            strokeDash=alt.StrokeDash(
                "series:N",
                title="rate",
                scale=alt.Scale(domain=domain, range=[DASHES["solid"], DASHES["dashed"]]),
                legend=line_legend(),
            ),
            tooltip=["series:N", alt.Tooltip("t_s:Q", title="s"), alt.Tooltip("rate:Q", format=".1f")],
        )
    )
    errs = (
        alt.Chart(data_values(close_steps(tl.select("t_s", errors=pl.col("errors") / w), [], w, end_s)))
        .mark_area(
            interpolate="step-after", color=PALETTE["failed"], opacity=0.6, line={"color": PALETTE["failed"]}
        )
        .encode(
            x=_TIME_AXIS,
            y=alt.Y("errors:Q", title="Errors (req/s)"),
            tooltip=[alt.Tooltip("t_s:Q", title="s"), alt.Tooltip("errors:Q", format=".1f")],
        )
    )
    bands = _band_layers(phases)
    return finish(
        alt.vconcat(
            alt.layer(*bands, top).properties(width=_WIDTH, height=_HEIGHT * 2 // 3),
            alt.layer(*bands, errs).properties(width=_WIDTH, height=_HEIGHT // 3),
        ).properties(
            title=_title(
                "Throughput: planned vs achieved, and errors",
                f"window {w:g} s; answered requests per second; errors (4xx/5xx, refused, reset, "
                "timeouts) on their own axis below",
            )
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
        .sort("start_s", "task_type")
        # stacked by hand: each bar spans y0..y1 (a bar with x/x2 needs y2, or Vega-Lite draws dashes)
        .with_columns(y1=pl.col("tasks").cum_sum().over("start_s"))
        .with_columns(y0=pl.col("y1") - pl.col("tasks"))
    )
    chart = (
        alt.Chart(data_values(hist))
        .mark_bar(stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X("start_s:Q", title=f"Created -> {status} (s)"),
            x2="end_s:Q",
            y=alt.Y("y0:Q", title="Tasks", axis=alt.Axis(tickMinStep=1, format="d")),
            y2="y1:Q",
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
    return finish(chart)


def ws_connections(ws_events: Frame, *, window_s: float = 1.0) -> alt.Chart:
    """Open WebSocket connections over time, with drops and connect failures per window."""
    lf = analysis._lazy(ws_events)
    w = fit_window(_span_s(lf, "t"), window_s, 3)
    tl = analysis.ws_connections_timeline(lf, window_s=w)
    long = tl.unpivot(
        ["open", "dropped", "failed"], index="t_s", variable_name="series", value_name="connections"
    )
    chart = (
        alt.Chart(data_values(long))
        .mark_line(interpolate="step-after")
        .encode(
            x=_TIME_AXIS,
            y=alt.Y("connections:Q", title="Connections"),
            color=alt.Color(
                "series:N",
                title="series",
                scale=alt.Scale(
                    domain=["open", "dropped", "failed"],
                    range=[PALETTE["ok"], PALETTE["degraded"], PALETTE["failed"]],
                ),
            ),
            tooltip=["series:N", alt.Tooltip("t_s:Q", title="s"), "connections:Q"],
        )
        .properties(
            title=_title("WebSocket connections over time", f"window {w:g} s; dropped/failed per window"),
            width=_WIDTH,
            height=_HEIGHT,
        )
    )
    return finish(chart)
