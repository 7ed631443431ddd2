"""Analysis of HTTP runs: pure Polars functions from an events frame to a result frame.

Every function takes the HTTP ``events`` frame (``schema.HTTP_SCHEMA``), eager or lazy, and returns
an eager ``pl.DataFrame``. Latency is ``t_end - t_start``; response time is ``t_end - t_intended``
(latency plus the time the request waited behind schedule: the coordinated-omission view). Both
are reported in milliseconds (Float64).

**Which rows each figure covers** (outcome classes, ``schema``; details in ``analysis_core``):
latency and response-time percentiles cover the *answered* rows by default (a complete response
of any status; ``include=`` selects others); ``errors`` are target-side (answered 4xx/5xx and
target failures) and ``error_rate`` divides them by the *sent* rows; tester-side rows (dropped,
cancelled, auth, client) are counted in ``not_sent``, never as errors; throughput (``rps``)
counts answered rows (per phase: over the phase's planned window, see ``analysis_phase``).

Percentiles are exact quantiles over the covered rows with **linear interpolation** between the two
nearest order statistics (``QUANTILE_METHOD``; the same as ``numpy.quantile``'s default and
Hyndman-Fan type 7): for ``n`` sorted values ``x`` and level ``q``, ``h = (n - 1) q`` and the
quantile is ``x[floor(h)] + (h - floor(h)) (x[floor(h) + 1] - x[floor(h)])``. Every function,
chart, comparison and test of this package uses that definition.

>>> from taskforge_perf.synthetic import synthetic_events
>>> ev = synthetic_events(10_000, seed=1)
>>> summary(ev).columns[:8]
['endpoint', 'count', 'answered', 'not_sent', 'rps', 'errors', 'error_rate', 'p50_ms']

Per-phase analysis (``by_phase``, ``phase_windows``) lives in ``analysis_phase``, the shared
core in ``analysis_core``, outcome counts and headlines in ``analysis_outcomes``, WebSocket
analysis (``task_latency``, ``ws_summary``, ``ws_connections_timeline``) in ``analysis_ws``; all
are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import polars as pl

from taskforge_perf.analysis_core import (
    _NS_PER_MS,
    _NS_PER_S,
    LATENCY,
    NON_LOAD_PHASES,
    PERCENTILES,
    QUANTILE_METHOD,
    RESPONSE,
    By,
    Frame,
    Include,
    _interp_indices,
    _keys,
    _lazy,
    _ms,
    _prepare,
    _sort_keys,
    _summary,
    error_expr,
    include_expr,
    load_expr,
    not_sent_expr,
)
from taskforge_perf.analysis_outcomes import headline, headline_lines, not_sent_text, outcomes
from taskforge_perf.analysis_phase import by_phase, phase_spans, phase_windows, plan_offset_ns
from taskforge_perf.analysis_ws import task_latency, ws_connections_timeline, ws_summary
from taskforge_perf.schema import answered_expr, outcome_expr, sent_expr

__all__ = [
    "HEADLINE_COLUMNS",
    "LATENCY",
    "NON_LOAD_PHASES",
    "PERCENTILES",
    "QUANTILE_METHOD",
    "RESPONSE",
    "SPECTRUM_LEVELS",
    "By",
    "Frame",
    "Include",
    "by_phase",
    "by_user",
    "by_user_endpoint",
    "error_expr",
    "errors",
    "headline",
    "headline_lines",
    "include_expr",
    "load_expr",
    "not_sent_expr",
    "not_sent_text",
    "outcomes",
    "overall",
    "percentile_spectrum",
    "phase_spans",
    "phase_windows",
    "plan_offset_ns",
    "answered_expr",
    "sent_expr",
    "slowest_users",
    "summary",
    "task_latency",
    "timeline",
    "ws_connections_timeline",
    "ws_summary",
]

#: The columns of ``summary`` worth a first look (terminal output, the end-of-run snapshot).
HEADLINE_COLUMNS: tuple[str, ...] = (
    "endpoint",
    "count",
    "not_sent",
    "rps",
    "errors",
    "error_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "resp_p99_ms",
)

#: Levels of the HDR spectrum: 0, 0.1 .. 0.8, then q = 1 - 10^-k for k = 1.0, 1.1 .. 5.0.
SPECTRUM_LEVELS: tuple[float, ...] = tuple(k / 10 for k in range(9)) + tuple(
    1.0 - 10.0 ** (-k / 10) for k in range(10, 51)
)


def summary(
    events: Frame,
    *,
    by: By = ("endpoint",),
    duration_s: float | None = None,
    include: Include = "answered",
) -> pl.DataFrame:
    """Per group: outcome counts, rps, errors, error_rate and latency / response-time distribution.

    Columns: the ``by`` keys, ``count`` (every row), ``answered`` (a complete response, any
    status), ``not_sent`` (tester-side rows: dropped, cancelled, auth, client), ``rps`` (answered
    rows / duration; the duration defaults to the span of the frame's answered rows, so group
    rates add up to the run's), ``errors`` (answered 4xx/5xx plus target failures),
    ``error_rate`` (errors / sent rows, i.e. ``count - not_sent``), ``p50_ms p90_ms p95_ms p99_ms
    p99_9_ms max_ms mean_ms`` of latency and the same prefixed ``resp_`` for response time, over
    the ``include`` rows (default "answered"; "all" or a sequence of outcome classes otherwise;
    null when the group has none). Sorted by the keys (text order). No total row: see ``overall``.

    >>> from taskforge_perf.synthetic import synthetic_events
    >>> s = summary(synthetic_events(5_000, seed=2))
    >>> s.height, s["count"].sum()
    (5, 5000)
    """
    keys = _keys(by)
    df = _summary(events, keys, duration_s, per_group_span=False, include=include)
    return _sort_keys(df, keys).drop("_t0", "_t1")


def overall(events: Frame, *, duration_s: float | None = None, include: Include = "answered") -> pl.DataFrame:
    """The whole run as one row, with the columns of ``summary`` (no keys)."""
    return _summary(events, [], duration_s, per_group_span=False, include=include).drop("_t0", "_t1")


def by_user(events: Frame, *, duration_s: float | None = None, include: Include = "answered") -> pl.DataFrame:
    """``summary`` per user."""
    return summary(events, by=("user",), duration_s=duration_s, include=include)


def by_user_endpoint(
    events: Frame, *, duration_s: float | None = None, include: Include = "answered"
) -> pl.DataFrame:
    """``summary`` per user x endpoint."""
    return summary(events, by=("user", "endpoint"), duration_s=duration_s, include=include)


def timeline(
    events: Frame,
    *,
    window_s: float = 1.0,
    by: By = ("endpoint",),
    time_col: Literal["t_start", "t_intended", "t_end"] = "t_start",
    include: Include = "answered",
    start_s: float | None = None,
    end_s: float | None = None,
) -> pl.DataFrame:
    """Per window of ``window_s`` s: throughput, error rate, latency and response-time percentiles.

    A request falls in the window of its ``time_col`` (default ``t_start``; use ``t_intended`` to
    place requests where the schedule wanted them, which shows a stall where it happened). Columns:
    the ``by`` keys, ``t_s`` (window start, seconds since run start), ``count`` (every row),
    ``answered``, ``not_sent``, ``rps`` (answered rows per second of the window), ``errors``
    (target-side), ``error_rate`` (errors / sent rows), ``p50_ms p95_ms p99_ms`` and
    ``resp_p50_ms resp_p95_ms resp_p99_ms`` over the ``include`` rows (default answered).
    ``start_s`` / ``end_s`` (seconds since run start: the observed span, e.g. the load's start and
    the plan's end) make a partial first or last window's ``rps`` use the window's real length.
    Empty windows between the first and the last are present with count 0 and null percentiles.
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0 (got {window_s})")
    keys = _keys(by)
    w_ns = int(round(window_s * _NS_PER_S))
    if w_ns <= 0:
        raise ValueError(f"window_s must be at least 1 ns (got {window_s})")
    levels = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    lf = _prepare(events, keys, include, _w=pl.col(time_col).floordiv(w_ns).clip(lower_bound=0))
    c = pl.col
    counts = lf.group_by(*keys, "_w").agg(
        pl.len().cast(pl.UInt64).alias("count"),
        c("_ans").sum().cast(pl.UInt64).alias("answered"),
        c("_ns").sum().cast(pl.UInt64).alias("not_sent"),
        c("_err").sum().cast(pl.UInt64).alias("errors"),
    )
    dists = (
        lf.filter(c("_inc"))
        .group_by(*keys, "_w")
        .agg(
            *[_ms(c("_lat").quantile(q, QUANTILE_METHOD)).alias(f"{n}_ms") for n, q in levels],
            *[_ms(c("_resp").quantile(q, QUANTILE_METHOD)).alias(f"resp_{n}_ms") for n, q in levels],
        )
    )
    df = counts.join(dists, on=[*keys, "_w"], how="left", nulls_equal=True).collect()
    if df.is_empty():
        grid = df.select(*keys, "_w")
    else:
        w_lo, w_hi = df.select(pl.col("_w").min().alias("lo"), pl.col("_w").max().alias("hi")).row(0)
        w = pl.DataFrame({"_w": pl.int_range(w_lo, w_hi + 1, eager=True)})
        w = w.cast({"_w": df.schema["_w"]})
        grid = df.select(keys).unique().join(w, how="cross") if keys else w
    out = grid.join(df, on=[*keys, "_w"], how="left", nulls_equal=True).with_columns(
        pl.col("count", "answered", "not_sent", "errors").fill_null(0)
    )
    t0 = pl.col("_w").cast(pl.Float64) * window_s
    lo = t0 if start_s is None else pl.max_horizontal(t0, pl.lit(float(start_s)))
    hi = t0 + window_s if end_s is None else pl.min_horizontal(t0 + window_s, pl.lit(float(end_s)))
    length = hi - lo
    sent = pl.col("count") - pl.col("not_sent")
    out = out.with_columns(
        t_s=t0,
        rps=pl.when(length > 0).then(pl.col("answered").cast(pl.Float64) / length),
        error_rate=pl.when(sent > 0).then(pl.col("errors") / sent),
    )
    out = _sort_keys(out.sort("_w"), keys) if keys else out.sort("_w")
    stats = [f"{n}_ms" for n, _ in levels] + [f"resp_{n}_ms" for n, _ in levels]
    return out.select(*keys, "t_s", "count", "answered", "not_sent", "rps", "errors", "error_rate", *stats)


def sorted_quantiles(sorted_lists: pl.DataFrame, cols: Sequence[str], qs: Sequence[float]) -> pl.DataFrame:
    """Quantiles ``qs`` of sorted list columns ``cols`` (one row per input row), exploded long.

    Adds ``_q`` (the level) and, for each ``col``, its quantile under the name ``col``; the
    ``n`` column must hold each row's list length. Used by the spectrum and by ``compare``.
    """
    lo_l, hi_l, fr_l = [], [], []
    for n in sorted_lists["n"].to_list():
        lo, hi, fr = _interp_indices(max(int(n), 1), qs)
        lo_l.append(lo)
        hi_l.append(hi)
        fr_l.append(fr)
    df = sorted_lists.with_columns(
        _lo=pl.Series(lo_l, dtype=pl.List(pl.Int64)),
        _hi=pl.Series(hi_l, dtype=pl.List(pl.Int64)),
        _fr=pl.Series(fr_l, dtype=pl.List(pl.Float64)),
        _q=pl.lit(pl.Series([list(qs)], dtype=pl.List(pl.Float64))).first(),
    )
    df = df.with_columns(
        *[
            pl.col(c).list.gather(pl.col(f"_{end}")).cast(pl.List(pl.Float64)).alias(f"_{c}_{end}")
            for c in cols
            for end in ("lo", "hi")
        ],
    ).drop(*cols, "_lo", "_hi")
    df = df.explode("_q", "_fr", *[f"_{c}_lo" for c in cols], *[f"_{c}_hi" for c in cols])
    return df.select(
        pl.exclude("_fr", *[f"_{c}_lo" for c in cols], *[f"_{c}_hi" for c in cols]),
        *[
            (pl.col(f"_{c}_lo") + pl.col("_fr") * (pl.col(f"_{c}_hi") - pl.col(f"_{c}_lo"))).alias(c)
            for c in cols
        ],
    )


def percentile_spectrum(events: Frame, *, by: By = None, include: Include = "answered") -> pl.DataFrame:
    """The HDR view: latency and response time at ``SPECTRUM_LEVELS`` (p0 .. p99.999).

    Columns: the ``by`` keys, ``percentile`` (0..99.999), ``inverse_tail`` (1 / (1 - q), the
    log-scale x axis of HdrHistogram plots), ``latency_ms``, ``response_ms``, ``count`` (rows
    covered: the ``include`` rows, answered by default). Non-decreasing in ``percentile`` within
    each group; a group with no such rows has no row.
    """
    keys = _keys(by)
    lf = _lazy(events).filter(include_expr(include)).select(*keys, LATENCY, RESPONSE)
    aggs = [pl.col("_lat").sort(), pl.col("_resp").sort(), pl.len().alias("n")]
    if keys:
        lists = lf.group_by(keys).agg(aggs).collect()
    else:
        lists = lf.select(
            pl.col("_lat").sort().implode(), pl.col("_resp").sort().implode(), n=pl.len()
        ).collect()
    lists = lists.filter(pl.col("n") > 0)
    long = sorted_quantiles(lists, ["_lat", "_resp"], SPECTRUM_LEVELS)
    long = long.with_columns(
        percentile=pl.col("_q") * 100.0,
        inverse_tail=1.0 / (1.0 - pl.col("_q")),
        latency_ms=pl.col("_lat") / _NS_PER_MS,
        response_ms=pl.col("_resp") / _NS_PER_MS,
        count=pl.col("n").cast(pl.UInt64),
    )
    long = _sort_keys(long.sort("_q"), keys) if keys else long.sort("_q")
    return long.select(*keys, "percentile", "inverse_tail", "latency_ms", "response_ms", "count")


def errors(events: Frame) -> pl.DataFrame:
    """Rows with an error kind, by kind, status and endpoint, most frequent first.

    Columns: ``error``, ``outcome`` (``answered`` for 4xx/5xx, ``target_failure``, or
    ``tester_side`` for rows never sent or cut by the tester: not errors of the target), ``status``,
    ``endpoint``, ``count``, ``share`` (of all rows listed), ``rate`` (of the endpoint's rows).
    """
    lf = _lazy(events)
    totals = lf.group_by("endpoint").agg(pl.len().alias("_requests"))
    df = (
        lf.filter(pl.col("error").is_not_null())
        .group_by("error", "status", "endpoint")
        .agg(pl.len().cast(pl.UInt64).alias("count"))
        .join(totals, on="endpoint", how="left", nulls_equal=True)
        .with_columns(outcome=outcome_expr())
        .collect()
    )
    df = df.with_columns(
        share=pl.col("count") / pl.col("count").sum(), rate=pl.col("count") / pl.col("_requests")
    )
    df = df.sort(
        pl.col("count"),
        pl.col("error").cast(pl.String),
        pl.col("status"),
        pl.col("endpoint").cast(pl.String),
        descending=[True, False, False, False],
    )
    return df.select("error", "outcome", "status", "endpoint", "count", "share", "rate")


def slowest_users(events: Frame, n: int = 10, *, include: Include = "answered") -> pl.DataFrame:
    """The ``n`` users with the highest latency p95, with their share of the traffic.

    Columns: ``rank``, ``user``, ``count``, ``share`` (of all requests), ``error_rate``
    (target-side errors / sent rows), ``p50_ms``, ``p95_ms``, ``p99_ms``, ``resp_p95_ms`` (over
    the ``include`` rows, answered by default; users without any rank last).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 (got {n})")
    lf = _prepare(events, ["user"], include)
    sent = pl.len() - pl.col("_ns").sum()
    df = (
        lf.group_by("user")
        .agg(
            pl.len().cast(pl.UInt64).alias("count"),
            pl.when(sent > 0).then(pl.col("_err").sum() / sent).alias("error_rate"),
            *[
                _ms(pl.col("_lat").filter("_inc").quantile(q, QUANTILE_METHOD)).alias(f"{name}_ms")
                for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
            ],
            _ms(pl.col("_resp").filter("_inc").quantile(0.95, QUANTILE_METHOD)).alias("resp_p95_ms"),
        )
        .collect()
    )
    df = df.with_columns(share=pl.col("count") / pl.col("count").sum())
    df = df.sort(pl.col("p95_ms"), pl.col("user").cast(pl.String), descending=[True, False], nulls_last=True)
    df = df.head(n).with_row_index("rank", offset=1)
    return df.select(
        "rank", "user", "count", "share", "error_rate", "p50_ms", "p95_ms", "p99_ms", "resp_p95_ms"
    )


# --- user groups and sessions (issue 18) ----------------------------------------------------


_SESSIONS_SCHEMA = {"t_s": pl.Float64, "active": pl.Int64, "started": pl.Int64, "ended": pl.Int64}


def by_group(events: Frame, *, endpoint: bool = False, duration_s: float | None = None) -> pl.DataFrame:
    """``summary`` per user group (a ``UserGroup`` or ``Sessions`` name; null: rows of no group),
    per group x endpoint with ``endpoint=True``.

    >>> from taskforge_perf.synthetic import synthetic_events
    >>> by_group(synthetic_events(100, seed=1))["count"].to_list()
    [100]
    """
    lf = _lazy(events)
    if "group" not in lf.collect_schema().names():  # a frame from before groups existed
        lf = lf.with_columns(pl.lit(None, dtype=pl.Categorical).alias("group"))
    return summary(lf, by=("group", "endpoint") if endpoint else ("group",), duration_s=duration_s)


def sessions_timeline(
    events: Frame, ws_events: Frame | None = None, *, window_s: float = 1.0
) -> pl.DataFrame:
    """Concurrent sessions over time: per window, ``t_s`` (window start, seconds since run start),
    ``active`` (sessions alive at some time in the window: from their first row to their last),
    ``started``
    and ``ended`` (sessions whose first / last row falls in the window). A session spans its rows
    (HTTP rows and, with ``ws_events``, its watch rows)."""
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0 (got {window_s})")
    w_ns = int(round(window_s * _NS_PER_S))
    lf = _lazy(events)
    if "session" not in lf.collect_schema().names():
        return pl.DataFrame(schema=_SESSIONS_SCHEMA)
    parts = [lf.select(pl.col("session"), pl.col("t_start").alias("t0"), pl.col("t_end").alias("t1"))]
    if ws_events is not None:
        wl = _lazy(ws_events)
        if "session" in wl.collect_schema().names():
            parts.append(wl.select(pl.col("session"), pl.col("t").alias("t0"), pl.col("t").alias("t1")))
    spans = (
        pl.concat(parts)
        .filter(pl.col("session").is_not_null())
        .group_by("session")
        .agg(pl.col("t0").min().alias("start"), pl.col("t1").max().alias("end"))
        .collect()
    )
    if spans.height == 0:
        return pl.DataFrame(schema=_SESSIONS_SCHEMA)
    first = int(spans["start"].min()) // w_ns  # type: ignore[arg-type]
    last = int(spans["end"].max()) // w_ns  # type: ignore[arg-type]
    grid = pl.DataFrame({"w": pl.int_range(first, last + 1, eager=True).cast(pl.Int64)})
    starts = spans.group_by((pl.col("start") // w_ns).alias("w")).agg(pl.len().alias("started"))
    ends = spans.group_by((pl.col("end") // w_ns).alias("w")).agg(pl.len().alias("ended"))
    out = (
        grid.join(starts, on="w", how="left")
        .join(ends, on="w", how="left")
        .with_columns(pl.col("started", "ended").fill_null(0).cast(pl.Int64))
        .with_columns(
            # started up to this window, minus those that ended before it: sessions alive in it
            (pl.col("started").cum_sum() - pl.col("ended").cum_sum() + pl.col("ended")).alias("active"),
            (pl.col("w") * window_s).cast(pl.Float64).alias("t_s"),
        )
    )
    return out.select("t_s", "active", "started", "ended")
