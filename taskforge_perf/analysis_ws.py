"""Analysis of WebSocket runs: pure Polars functions over the ``ws_events`` frame (``WS_SCHEMA``).

Quantiles use linear interpolation, like the rest of the package (see ``analysis``).

>>> from taskforge_perf.synthetic import synthetic_ws_events
>>> ws_summary(synthetic_ws_events(100, connections=10, drops=1))["opened"].item()
11
"""

from __future__ import annotations

from typing import Literal

import polars as pl

__all__ = ["task_latency", "ws_connections_timeline", "ws_summary"]

Frame = pl.DataFrame | pl.LazyFrame

_QM: Literal["linear"] = "linear"
_FINAL = ("completed", "failed")
_TASK_KINDS = ("subscribe", "resubscribe", "message")


def _lazy(frame: Frame) -> pl.LazyFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame
    if isinstance(frame, pl.DataFrame):
        return frame.lazy()
    raise TypeError(f"expected a polars DataFrame or LazyFrame (got {type(frame).__name__})")


def _kind(name: str) -> pl.Expr:
    return pl.col("kind").cast(pl.String) == name


def task_latency(ws_events: Frame, *, events: Frame | None = None) -> pl.DataFrame:
    """End-to-end task latency per task type and status, from the first message of each status.

    For each (task_id, status) only the FIRST message counts; its ``since_created_ns`` is the time
    from creation (202 seen) to that status. Columns: ``task_type``, ``status``, ``count``,
    ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms``, and per task type:

    - ``tasks``: tasks seen (a subscribe, resubscribe or message row, a random id subscribed while
      no task existed left out; with ``events``, also every
      task created over HTTP, its type read from the endpoint name "POST /tasks <type>");
    - ``untracked``: of those, tasks no socket ever subscribed to (their outcome is unknown);
    - ``unfinished_at_end``: of the tracked ones, tasks with no completed/failed message by the
      end of the run. Not "never completed": the target may finish them later (see
      ``LoadTester.run(wait_for_tasks=...)``).

    Sorted by task type and status.
    """
    lf = _lazy(ws_events).with_columns(pl.col("task_type").cast(pl.String), pl.col("status").cast(pl.String))
    msgs = lf.filter(_kind("message") & pl.col("task_id").is_not_null())
    first = (
        msgs.sort("t")
        .group_by("task_id", "status")
        .agg(pl.col("since_created_ns").first(), pl.col("task_type").drop_nulls().first())
    )
    seen = lf.filter(
        pl.col("kind").cast(pl.String).is_in(_TASK_KINDS)
        & pl.col("task_id").is_not_null()
        & ((pl.col("status") != "random") | ~_kind("subscribe")).fill_null(True)  # a made-up id
    ).select("task_id", "task_type", _tracked=pl.lit(True))
    if events is not None:
        endpoint = pl.col("endpoint").cast(pl.String)
        created = (
            _lazy(events)
            .filter(pl.col("task_id").is_not_null() & pl.col("error").is_null())
            .select(
                "task_id",
                task_type=pl.when(endpoint.str.starts_with("POST /tasks ")).then(
                    endpoint.str.strip_prefix("POST /tasks ")
                ),
                _tracked=pl.lit(False),
            )
        )
        seen = pl.concat([seen, created])
    tasks = seen.group_by("task_id").agg(pl.col("task_type").drop_nulls().first(), pl.col("_tracked").any())
    done = first.filter(pl.col("status").is_in(_FINAL)).select("task_id").unique()
    tasks = tasks.join(done.with_columns(_done=pl.lit(True)), on="task_id", how="left")
    per_type = tasks.group_by("task_type").agg(
        tasks=pl.len().cast(pl.UInt64),
        untracked=(~pl.col("_tracked")).sum().cast(pl.UInt64),
        unfinished_at_end=(pl.col("_tracked") & pl.col("_done").is_null()).sum().cast(pl.UInt64),
    )
    c = pl.col("since_created_ns")
    lat = first.group_by("task_type", "status").agg(
        pl.len().cast(pl.UInt64).alias("count"),
        *[
            (c.quantile(q, _QM) / 1e6).alias(f"{name}_ms")
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        ],
        (c.max().cast(pl.Float64) / 1e6).alias("max_ms"),
    )
    out = lat.join(per_type, on="task_type", how="full", coalesce=True, nulls_equal=True)
    out = out.with_columns(pl.col("count").fill_null(0))
    return out.collect().sort("task_type", "status", nulls_last=True)


def ws_summary(ws_events: Frame, *, duration_s: float | None = None) -> pl.DataFrame:
    """One row describing the WebSocket side of a run.

    Columns: ``opened`` (connect rows), ``failed`` (connect_error rows), ``rejected`` (rows with
    error "rejected"), ``dropped`` (close rows with error "dropped"), ``reconnected``,
    ``messages``, ``messages_per_s`` (over ``duration_s``, default the span of ``t``),
    ``subscriptions``, ``resubscriptions``, ``lost_subscriptions`` (rows with error
    "lost_subscription"), ``isolation_findings`` (updates a user received for a task another user
    created, not asked for by cross-user sampling: a real isolation failure), ``isolation_expected``
    (the same, caused by ``WsOptions(sample_from="all")``: the gateway let a user subscribe to
    another user's task, which that option does on purpose), ``unknown_shape``,
    ``handshake_p50_ms``, ``handshake_p95_ms``, ``duration_s``.
    """
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be > 0 (got {duration_s})")
    lf = _lazy(ws_events).with_columns(
        pl.col("kind").cast(pl.String).alias("_k"), pl.col("error").cast(pl.String).alias("_e")
    )
    k, e = pl.col("_k"), pl.col("_e")
    span = (pl.col("t").max() - pl.col("t").min()).cast(pl.Float64) / 1e9
    dur = pl.lit(float(duration_s)) if duration_s is not None else span
    hs = pl.col("handshake_ns").filter(k == "connect")

    def count(cond: pl.Expr) -> pl.Expr:
        return cond.fill_null(False).sum().cast(pl.UInt64)

    df = lf.select(
        opened=count(k == "connect"),
        failed=count(k == "connect_error"),
        rejected=count(e == "rejected"),
        dropped=count((k == "close") & (e == "dropped")),
        reconnected=count(k == "reconnect"),
        messages=count(k == "message"),
        messages_per_s=pl.when(dur > 0).then(count(k == "message") / dur),
        subscriptions=count(k == "subscribe"),
        resubscriptions=count(k == "resubscribe"),
        lost_subscriptions=count(e == "lost_subscription"),
        isolation_findings=count((k == "isolation") & (e.is_null() | (e != "expected"))),
        isolation_expected=count((k == "isolation") & (e == "expected")),
        unknown_shape=count(e == "unknown_shape"),
        handshake_p50_ms=hs.quantile(0.5, _QM) / 1e6,
        handshake_p95_ms=hs.quantile(0.95, _QM) / 1e6,
        duration_s=dur,
    )
    return df.collect()


def ws_connections_timeline(ws_events: Frame, *, window_s: float = 1.0) -> pl.DataFrame:
    """Open WebSocket connections over time, per window of ``window_s`` seconds.

    A ``connect`` row opens a connection and a ``close`` row closes one. Columns: ``t_s``
    (window start, s), ``opened``, ``closed``, ``dropped`` (closes with error "dropped"),
    ``failed`` (connect_error), ``messages``, ``open`` (connections open at the window's end).
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0 (got {window_s})")
    w_ns = int(round(window_s * 1e9))
    lf = _lazy(ws_events).select(
        _k=pl.col("kind").cast(pl.String),
        _e=pl.col("error").cast(pl.String),
        _w=pl.col("t").floordiv(w_ns).clip(lower_bound=0),
    )
    k = pl.col("_k")
    df = (
        lf.group_by("_w")
        .agg(
            opened=(k == "connect").sum().cast(pl.Int64),
            closed=(k == "close").sum().cast(pl.Int64),
            dropped=((k == "close") & (pl.col("_e") == "dropped")).fill_null(False).sum().cast(pl.Int64),
            failed=(k == "connect_error").sum().cast(pl.Int64),
            messages=(k == "message").sum().cast(pl.Int64),
        )
        .collect()
    )
    if df.is_empty():
        return df.select(*df.columns[1:], t_s=pl.lit(0.0), open=pl.lit(0, dtype=pl.Int64)).clear()
    w_lo, w_hi = df.select(pl.col("_w").min().alias("lo"), pl.col("_w").max().alias("hi")).row(0)
    grid = pl.DataFrame({"_w": pl.int_range(w_lo, w_hi + 1, eager=True)})
    out = grid.cast({"_w": df.schema["_w"]}).join(df, on="_w", how="left").fill_null(0).sort("_w")
    out = out.with_columns(
        t_s=pl.col("_w").cast(pl.Float64) * window_s,
        open=(pl.col("opened") - pl.col("closed")).cum_sum(),
    )
    return out.select("t_s", "opened", "closed", "dropped", "failed", "messages", "open")
