"""Task-side figures per phase for the assessment: tasks tracked, completed, judged, latency. Pure."""

from __future__ import annotations

import polars as pl

__all__ = ["task_stats"]


def task_stats(events: pl.DataFrame, ws_events: pl.DataFrame, settle_s: float) -> pl.DataFrame:
    """Per phase of creation, the tasks the run tracked over WebSocket.

    A task is *tracked* when this run created it (an HTTP row with its ``task_id``) and a socket
    subscribed to it. Columns: ``phase``, ``tasks_tracked``, ``tasks_completed`` (a ``completed``
    message arrived), ``tasks_judged`` (completed, failed, or created at least ``settle_s`` before
    the last recorded event), ``task_completion`` (completed / judged) and ``task_p95_ms`` (p95
    of created -> first completed message, over the completed tasks).
    """
    created = (
        events.filter(pl.col("task_id").is_not_null())
        .group_by("task_id")
        .agg(pl.col("phase").cast(pl.String).first(), pl.col("t_end").min().alias("_t"))
    )
    kind, status = pl.col("kind").cast(pl.String), pl.col("status").cast(pl.String)
    subscribed = ws_events.filter(kind.is_in(["subscribe", "resubscribe"])).select("task_id").unique()
    final = (
        ws_events.filter((kind == "message") & status.is_in(["completed", "failed"]))
        .sort("t")
        .group_by("task_id")
        .agg(
            (status == "completed").any().alias("_done"),
            pl.col("since_created_ns").filter(status == "completed").first().alias("_lat"),
        )
    )
    ends = [events["t_end"].max(), ws_events["t"].max()]
    last = max((int(e) for e in ends if isinstance(e, int)), default=0)  # the last recorded event
    tracked = created.join(subscribed, on="task_id", how="semi").join(final, on="task_id", how="left")
    judged = pl.col("_done").is_not_null() | (pl.col("_t") <= last - int(settle_s * 1e9))
    stats = tracked.group_by("phase").agg(
        tasks_tracked=pl.len(),
        tasks_completed=pl.col("_done").fill_null(False).sum(),
        tasks_judged=judged.sum(),
        task_p95_ms=pl.col("_lat").quantile(0.95, "linear") / 1e6,
    )
    return stats.with_columns(
        task_completion=pl.when(pl.col("tasks_judged") > 0).then(
            pl.col("tasks_completed") / pl.col("tasks_judged")
        )
    )
