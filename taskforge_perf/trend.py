"""Percentiles of a series of runs (trends across builds), with per-run order-statistic intervals.

These intervals treat a run's rows as independent; they describe each run and are not a test.
To decide whether a candidate regressed use ``taskforge_perf.compare.compare``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import polars as pl

from taskforge_perf import analysis
from taskforge_perf.analysis import Frame, _interp_indices, _keys, _lazy
from taskforge_perf.compare_stats import LEVELS as _LEVELS

if TYPE_CHECKING:
    import altair as alt

__all__ = ["Trend", "compare_series"]


def _unwrap(run: Any) -> Frame:
    """Accept a frame, a Run-like object (its load rows) or a saved run folder."""
    from taskforge_perf.compare import _as_runs

    return _as_runs(run)[0][0]


def _quantiles_with_ci(events: Frame, keys: list[str], metrics: Sequence[str], z: float) -> pl.DataFrame:
    """Per group: n, errors, and for each metric the point estimate and order-statistic CI (ns)."""
    lf = _lazy(events).select(*keys, "error", analysis.LATENCY)
    aggs = [
        pl.col("_lat").sort(),
        pl.len().alias("n"),
        pl.col("error").is_not_null().sum().alias("errors"),
    ]
    if keys:
        lists = lf.group_by(keys).agg(aggs).collect()
    else:
        lists = lf.select(pl.col("_lat").sort().implode(), *aggs[1:]).collect()
    lists = lists.filter(pl.col("n") > 0)
    cols: dict[str, list[list[int]]] = {}
    fracs: dict[str, list[float]] = {}
    for n in lists["n"].to_list():
        for m in metrics:
            q = _LEVELS[m]
            lo, hi, fr = _interp_indices(n, [q])
            half = z * math.sqrt(n * q * (1 - q))
            r_lo = min(max(math.floor(n * q - half), 1), n) - 1  # 1-based rank -> 0-based index
            r_hi = min(max(math.ceil(n * q + half) + 1, 1), n) - 1
            cols.setdefault(m, []).append([lo[0], hi[0], r_lo, r_hi])
            fracs.setdefault(m, []).append(fr[0])
    out = lists.select(*keys, "n", "errors")
    for m in metrics:
        idx = pl.Series(cols.get(m, []), dtype=pl.List(pl.Int64))
        g = lists.select(v=pl.col("_lat").list.gather(idx)).to_series()
        out = (
            out.with_columns(_g=g, _f=pl.Series(fracs.get(m, []), dtype=pl.Float64))
            .with_columns(
                (
                    pl.col("_g").list.get(0)
                    + pl.col("_f") * (pl.col("_g").list.get(1) - pl.col("_g").list.get(0))
                ).alias(m),
                pl.col("_g").list.get(2).cast(pl.Float64).alias(f"{m}_lo"),
                pl.col("_g").list.get(3).cast(pl.Float64).alias(f"{m}_hi"),
            )
            .drop("_g", "_f")
        )
    return out


@dataclass(frozen=True, slots=True)
class Trend:
    """Percentiles of a series of runs: ``frame`` (long) and ``chart()``."""

    frame: pl.DataFrame
    by: tuple[str, ...]

    def chart(self) -> alt.FacetChart:
        """Each metric across runs per group, with order-statistic intervals (a panel a metric)."""
        import altair as alt

        from taskforge_perf.charts import _title, data_values

        keys = list(self.by)
        group = (
            pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator=" · ")
            if keys
            else pl.lit("all")
        )
        df = self.frame.with_columns(group=group).drop(keys)
        base = alt.Chart().encode(
            x=alt.X("run:N", title="Run", sort=alt.EncodingSortField("run_index")),
            color=alt.Color("group:N", title=" · ".join(keys) or "group"),
        )
        line = base.mark_line(point=True).encode(
            y=alt.Y("value_ms:Q", title="Latency (ms)"),
            tooltip=["run:N", "group:N", "metric:N", alt.Tooltip("value_ms:Q", format=".2f")],
        )
        bars = base.mark_rule().encode(y="ci_low_ms:Q", y2="ci_high_ms:Q")
        from taskforge_perf.chart_style import finish

        return finish(
            alt.layer(line, bars, data=data_values(df))
            .facet(column=alt.Column("metric:N", title=None))
            .properties(title=_title("Latency percentiles across runs", "bars: 95% intervals"))
        )


def compare_series(
    runs: Sequence[Any] | Mapping[str, Any],
    *,
    by: str | Sequence[str] | None = ("endpoint",),
    metrics: Sequence[str] = ("p50", "p95", "p99"),
    confidence: float = 0.95,
) -> Trend:
    """Percentiles of more than two runs for trends: a long frame run x group x metric.

    ``runs``: frames (named run0, run1, ...), (name, frame) pairs, a name -> frame mapping, or
    Run-like objects (named by ``meta["name"]`` when present). Columns of ``Trend.frame``:
    ``run``, ``run_index``, the keys, ``metric``, ``value_ms``, ``ci_low_ms``, ``ci_high_ms``
    (order-statistic interval), ``count``, ``rel_to_first`` (relative to the first run).
    """
    items = list(runs.items()) if isinstance(runs, Mapping) else list(runs)
    named: list[tuple[str, Frame]] = []
    for i, item in enumerate(items):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            named.append((item[0], _unwrap(item[1])))
        else:
            from taskforge_perf.compare import _as_runs

            ((ev, meta),) = _as_runs(item)
            named.append((str((meta or {}).get("name", f"run{i}")), ev))
    if not named:
        raise ValueError("compare_series needs at least one run")
    unknown = [m for m in metrics if m not in _LEVELS]
    if unknown:
        raise ValueError(f"metrics must be a subset of {list(_LEVELS)} (got {list(metrics)})")
    keys = _keys(by)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    parts = []
    for i, (name, ev) in enumerate(named):
        q = _quantiles_with_ci(ev, keys, metrics, z)
        for m in metrics:
            parts.append(
                q.select(
                    *keys,
                    run=pl.lit(name),
                    run_index=pl.lit(i, dtype=pl.UInt32),
                    metric=pl.lit(m),
                    value_ms=pl.col(m) / 1e6,
                    ci_low_ms=pl.col(f"{m}_lo") / 1e6,
                    ci_high_ms=pl.col(f"{m}_hi") / 1e6,
                    count=pl.col("n").cast(pl.UInt64),
                )
            )
    frame = pl.concat(parts)
    first = frame.filter(pl.col("run_index") == 0).select(*keys, "metric", _first=pl.col("value_ms"))
    frame = (
        frame.join(first, on=[*keys, "metric"], how="left", nulls_equal=True)
        .with_columns(rel_to_first=pl.col("value_ms") / pl.col("_first") - 1)
        .drop("_first")
    )
    frame = frame.select("run", "run_index", *keys, pl.exclude("run", "run_index", *keys))
    return Trend(frame=frame.sort("run_index", "metric", *keys), by=tuple(keys))
