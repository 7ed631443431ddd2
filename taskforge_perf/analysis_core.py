"""The shared core of the HTTP analysis: row sets (outcome classes), quantiles and the summary table.

``analysis`` re-exports everything public here; import from there. What each figure covers:

- latency / response-time percentiles, ``max`` and ``mean``: the rows selected by ``include``,
  by default the **answered** rows (``schema.answered_expr``: a complete response of any status,
  4xx and 5xx included). Rows that never got a response (refused, timed out, dropped, cancelled)
  have no latency of the target to report. A group with no such rows has null percentiles.
- ``errors``: target-side errors: answered rows with status 4xx/5xx plus target failures
  (refused, reset, timeout, ...); ``error_rate`` = errors / **sent** rows (``schema.sent_expr``).
- ``not_sent``: tester-side rows (``dropped``, ``cancelled``, ``auth``, ``client``): counted on their
  own, never as errors of the target, never in a denominator.
- ``count`` = every row of the group (answered + target failures + not sent).
- ``rps`` = answered rows per second of the duration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import polars as pl

from taskforge_perf.schema import (
    OUTCOME_CLASSES,
    TESTER_SIDE_KINDS,
    answered_expr,
    outcome_expr,
    sent_expr,
)

Frame = pl.DataFrame | pl.LazyFrame
By = str | Sequence[str] | None
#: Which rows latency percentiles cover: "answered" (default), "all", or a sequence of outcome
#: classes (``schema.OUTCOME_CLASSES``: "answered", "target_failure", "tester_side").
Include = str | Sequence[str]

#: Interpolation of every quantile in this package (numpy's default, Hyndman-Fan type 7).
QUANTILE_METHOD: Literal["linear"] = "linear"

#: Column stem and level of the percentiles of ``summary``.
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.50),
    ("p90", 0.90),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p99_9", 0.999),
)

#: Phases whose rows are not load (auth traffic before and after the plan).
NON_LOAD_PHASES: tuple[str, ...] = ("setup", "teardown")

_NS_PER_MS = 1e6
_NS_PER_S = 1e9
LATENCY = (pl.col("t_end") - pl.col("t_start")).alias("_lat")
RESPONSE = (pl.col("t_end") - pl.col("t_intended")).alias("_resp")


def _lazy(events: Frame) -> pl.LazyFrame:
    if isinstance(events, pl.LazyFrame):
        return events
    if isinstance(events, pl.DataFrame):
        return events.lazy()
    raise TypeError(
        f"events must be a polars DataFrame or LazyFrame (got {type(events).__name__}); "
        "pass run.events, not the Run"
    )


def _keys(by: By) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def _sort_keys(df: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Sort by the group keys, categoricals by their text (stable, readable order)."""
    if not keys or df.is_empty():
        return df
    exprs = [
        pl.col(k).cast(pl.String) if isinstance(df.schema[k], pl.Categorical | pl.Enum) else pl.col(k)
        for k in keys
    ]
    return df.sort(exprs, nulls_last=True)


def _ms(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.Float64) / _NS_PER_MS


def load_expr() -> pl.Expr:
    """True for rows of the load itself (phase not setup/teardown; a null phase counts as load)."""
    return ~pl.col("phase").cast(pl.String).is_in(NON_LOAD_PHASES).fill_null(False)


def include_expr(include: Include = "answered") -> pl.Expr:
    """True for the rows latency percentiles cover under ``include``.

    >>> include_expr("all") is not None
    True
    """
    if isinstance(include, str):
        if include == "all":
            return pl.lit(True)
        if include == "answered":
            return answered_expr()
        classes = [include]
    else:
        classes = list(include)
    bad = [c for c in classes if c not in OUTCOME_CLASSES]
    if bad or not classes:
        raise ValueError(
            f"include must be 'answered', 'all' or a sequence of {', '.join(OUTCOME_CLASSES)} "
            f"(got {include!r})"
        )
    return outcome_expr().is_in(classes)


def error_expr() -> pl.Expr:
    """True for target-side errors: answered 4xx/5xx and target failures (never tester-side rows)."""
    return pl.col("error").is_not_null() & sent_expr()


def not_sent_expr() -> pl.Expr:
    """True for tester-side rows (dropped, cancelled, auth, client)."""
    return pl.col("error").cast(pl.String).is_in(TESTER_SIDE_KINDS).fill_null(False)


def _dist_aggs(col: str, prefix: str, levels: Sequence[tuple[str, float]]) -> list[pl.Expr]:
    # Plain aggregations only: Polars' fast paths do not apply to wrapped expressions (a cast or a
    # division around the quantile), so the conversion to ms happens afterwards.
    c = pl.col(col)
    out = [c.quantile(q, QUANTILE_METHOD).alias(f"{prefix}{name}_ms") for name, q in levels]
    out.append(c.max().alias(f"{prefix}max_ms"))
    out.append(c.mean().alias(f"{prefix}mean_ms"))
    return out


def _list_dist(col: str, prefix: str, levels: Sequence[tuple[str, float]]) -> list[pl.Expr]:
    """``_dist_aggs`` over a column of per-group lists (same values, same interpolation)."""
    c = pl.col(col).list
    out = [
        c.eval(pl.element().quantile(q, QUANTILE_METHOD)).list.first().alias(f"{prefix}{name}_ms")
        for name, q in levels
    ]
    out.append(c.max().alias(f"{prefix}max_ms"))
    out.append(c.mean().alias(f"{prefix}mean_ms"))
    return out


def _counts() -> list[pl.Expr]:
    """Per-group outcome counts (columns ``count answered not_sent errors``) and the answered span."""
    ans = pl.col("_ans")
    return [
        pl.len().alias("count"),
        ans.sum().alias("answered"),
        pl.col("_ns").sum().alias("not_sent"),
        pl.col("_err").sum().alias("errors"),
        pl.col("t_start").filter(ans).min().alias("_t0"),
        pl.col("t_end").filter(ans).max().alias("_t1"),
    ]


def _prepare(events: Frame, keys: Sequence[str], include: Include, **extra: pl.Expr) -> pl.LazyFrame:
    """The columns every summary needs: keys, outcome flags, and latency/response of included rows."""
    inc = include_expr(include)
    return _lazy(events).select(
        *keys,
        "t_start",
        "t_end",
        _ans=answered_expr(),
        _ns=not_sent_expr(),
        _err=error_expr(),
        _lat=pl.when(inc).then(LATENCY),
        _resp=pl.when(inc).then(RESPONSE),
        **extra,
    )


def _summary(
    events: Frame,
    keys: list[str],
    duration_s: float | None,
    *,
    per_group_span: bool,
    include: Include = "answered",
) -> pl.DataFrame:
    lf = _prepare(events, keys, include)
    if keys:
        # Each group's values gathered once into a list, then every quantile taken from that list:
        # about twice as fast as ten separate per-group quantile aggregations over the frame.
        df = (
            lf.group_by(keys)
            .agg(*_counts(), pl.col("_lat").drop_nulls(), pl.col("_resp").drop_nulls())
            .select(
                *keys,
                "count",
                "answered",
                "not_sent",
                "errors",
                "_t0",
                "_t1",
                *_list_dist("_lat", "", PERCENTILES),
                *_list_dist("_resp", "resp_", PERCENTILES),
            )
            .collect()
        )
    else:
        aggs = [*_counts(), *_dist_aggs("_lat", "", PERCENTILES), *_dist_aggs("_resp", "resp_", PERCENTILES)]
        df = lf.select(aggs).collect()
    if df.is_empty() or (not keys and df["count"][0] == 0):
        df = df.clear()
    if duration_s is not None:
        if duration_s <= 0:
            raise ValueError(f"duration_s must be > 0 (got {duration_s})")
        span = pl.lit(float(duration_s))
    elif per_group_span:
        span = (pl.col("_t1") - pl.col("_t0")).cast(pl.Float64) / _NS_PER_S
    else:
        span = (pl.col("_t1").max() - pl.col("_t0").min()).cast(pl.Float64) / _NS_PER_S
    stats = [c for c in df.columns if c.endswith("_ms")]
    u64 = pl.UInt64
    df = df.with_columns(
        *(_ms(pl.col(c)) for c in stats),
        count=pl.col("count").cast(u64),
        answered=pl.col("answered").cast(u64),
        not_sent=pl.col("not_sent").cast(u64),
        errors=pl.col("errors").cast(u64),
        rps=pl.when(span > 0).then(pl.col("answered") / span),
    ).with_columns(
        error_rate=pl.when(pl.col("count") > pl.col("not_sent")).then(
            pl.col("errors") / (pl.col("count") - pl.col("not_sent"))
        ),
    )
    return df.select(
        *keys, "count", "answered", "not_sent", "rps", "errors", "error_rate", *stats, "_t0", "_t1"
    )


def _interp_indices(n: int, qs: Sequence[float]) -> tuple[list[int], list[int], list[float]]:
    """Indices and weights of linear interpolation (``QUANTILE_METHOD``) for ``n`` sorted values."""
    lo, hi, frac = [], [], []
    for q in qs:
        h = (n - 1) * q
        f = math.floor(h)
        lo.append(int(f))
        hi.append(min(int(f) + 1, n - 1))
        frac.append(h - f)
    return lo, hi, frac
