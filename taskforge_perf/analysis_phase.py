"""Per-phase analysis and the one definition of achieved throughput. Pure Polars.

**Achieved throughput** of a phase = answered requests (``schema.answered_expr``) whose response
completed inside the phase's **planned** window, divided by the window's length. The window is
``[plan start + phase start, plan start + phase end)`` from the plan the run followed; the plan's
start on the run clock is given (``plan_start_s``, the run's ``meta["load_start_ns"]``) or inferred
from the earliest intended start of the earliest phase that has rows. Responses of one phase's
requests that complete in the next phase's window count there: the figure is what the target
delivered during the window, so a target that cannot keep up shows a shortfall. Without a plan the
window falls back to the phase's own span (first start to last end of its answered rows) and the
phase's own answered rows. ``by_phase``, ``assessment``, ``timeline`` (per window) and the live
dashboard all use this definition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from taskforge_perf.analysis_core import _NS_PER_S, Frame, Include, _lazy, _summary
from taskforge_perf.schema import answered_expr

if TYPE_CHECKING:
    from taskforge_perf.plan import StressPlan

__all__ = ["by_phase", "phase_spans", "phase_windows", "plan_offset_ns"]


def plan_offset_ns(plan: StressPlan, events: Frame, plan_start_s: float | None = None) -> int:
    """Run time (ns) at which the plan started: given, or inferred from the earliest intended
    start of a row of the earliest phase that has rows."""
    if plan_start_s is not None:
        return int(round(plan_start_s * 1e9))
    firsts = _lazy(events).group_by(pl.col("phase").cast(pl.String)).agg(pl.col("t_intended").min()).collect()
    if firsts.height == 0:
        return 0
    by_name = dict(zip(firsts["phase"].to_list(), firsts["t_intended"].to_list(), strict=True))
    for i, ph in enumerate(plan.phases):
        t = by_name.get(ph.name)
        if t is not None:
            return max(0, int(t - round(plan.boundaries[i] * 1e9)))
    return 0


def phase_windows(plan: StressPlan, events: Frame, plan_start_s: float | None = None) -> pl.DataFrame:
    """Each plan phase's planned window on the run clock: ``phase``, ``phase_index``, ``t0_ns``,
    ``t1_ns``, ``window_s`` (the phase's duration), in plan order."""
    offset = plan_offset_ns(plan, events, plan_start_s)
    rows = []
    for i, ph in enumerate(plan.phases):
        start = plan.boundaries[i]
        rows.append(
            {
                "phase": ph.name,
                "phase_index": i,
                "t0_ns": offset + int(round(start * 1e9)),
                "t1_ns": offset + int(round((start + ph.duration) * 1e9)),
                "window_s": float(ph.duration),
            }
        )
    schema = {"phase": pl.String, "phase_index": pl.Int64, "t0_ns": pl.Int64, "t1_ns": pl.Int64}
    return pl.DataFrame(rows, schema={**schema, "window_s": pl.Float64})


def _answered_in(events: Frame, windows: pl.DataFrame) -> list[int]:
    """Answered rows whose ``t_end`` lies in each window ``[t0_ns, t1_ns)``."""
    ends = _lazy(events).filter(answered_expr()).select("t_end").collect()["t_end"].sort()
    if windows.height == 0:
        return []
    lo = ends.search_sorted(windows["t0_ns"], side="left")
    hi = ends.search_sorted(windows["t1_ns"], side="left")
    return (hi - lo).cast(pl.Int64).to_list()


def by_phase(
    events: Frame,
    *,
    plan: StressPlan | None = None,
    plan_start_s: float | None = None,
    include: Include = "answered",
) -> pl.DataFrame:
    """``summary`` per phase, in the order the phases ran, with the achieved throughput.

    Columns: ``phase``, the ``summary`` columns (``count answered not_sent rps errors error_rate``
    and the latency / response-time distribution of the ``include`` rows), then ``window_s`` (the
    planned window, or the phase's own span without a plan) and ``answered_in_window``. ``rps`` is
    the achieved throughput: ``answered_in_window / window_s`` (see the module docstring). With a
    plan, every plan phase has a row (count 0 and null percentiles if none of its rows exist) in
    plan order, followed by phases outside the plan.
    """
    df = _summary(events, ["phase"], None, per_group_span=True, include=include)
    df = df.with_columns(pl.col("phase").cast(pl.String))
    if plan is None:
        win = ((pl.col("_t1") - pl.col("_t0")).cast(pl.Float64) / _NS_PER_S).alias("window_s")
        out = df.with_columns(win, answered_in_window=pl.col("answered").cast(pl.Int64))
        out = out.sort("_t0", nulls_last=True)
    else:
        windows = phase_windows(plan, events, plan_start_s)
        windows = windows.with_columns(answered_in_window=pl.Series(_answered_in(events, windows)))
        out = windows.join(df, on="phase", how="full", coalesce=True).sort(
            "phase_index", "_t0", nulls_last=True
        )
        fill = {c: pl.col(c).fill_null(0) for c in ("count", "answered", "not_sent", "errors")}
        out = out.with_columns(**fill)
        own = ((pl.col("_t1") - pl.col("_t0")).cast(pl.Float64) / _NS_PER_S).alias("_own")
        out = out.with_columns(own).with_columns(
            window_s=pl.coalesce("window_s", "_own"),
            answered_in_window=pl.coalesce("answered_in_window", pl.col("answered").cast(pl.Int64)),
        )
    out = out.with_columns(
        rps=pl.when(pl.col("window_s") > 0).then(pl.col("answered_in_window") / pl.col("window_s")),
        phase=pl.col("phase").cast(pl.Categorical),
    )
    cols = [c for c in df.columns if c not in ("_t0", "_t1")]
    return out.select(*cols, "window_s", "answered_in_window")


def phase_spans(events: Frame) -> pl.DataFrame:
    """Each phase with ``start_s`` and ``end_s`` (seconds since run start), in run order."""
    lf = (
        _lazy(events)
        .group_by("phase")
        .agg(
            start_s=pl.col("t_start").min().cast(pl.Float64) / _NS_PER_S,
            end_s=pl.col("t_end").max().cast(pl.Float64) / _NS_PER_S,
        )
    )
    return lf.collect().sort("start_s").rename({"phase": "name"})
