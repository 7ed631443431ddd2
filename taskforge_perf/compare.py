"""Baseline vs candidate: percentiles side by side with honest intervals and a verdict.

Method (deterministic, distribution-free; no resampling):

1. Per group and run, the quantile ``Q(q)`` is the exact linear-interpolation quantile used
   everywhere in the package (``analysis.QUANTILE_METHOD``).
2. Its ``confidence`` interval is the order-statistic interval: with ``n`` values sorted,
   the ranks ``n q -/+ z sqrt(n q (1 - q))`` (normal approximation of the binomial count of values
   below the true quantile; ``z`` the two-sided normal quantile), rounded outwards and clamped
   to ``1..n``. It needs no assumption on the latency distribution.
3. The two runs' intervals are combined as in Price & Bonett (2002): each run's standard error
   is ``(upper - lower) / (2 z)`` and the difference ``Qc - Qb`` gets
   ``delta -/+ z sqrt(se_b^2 + se_c^2)``; the relative interval divides it by ``Qb``.
4. A metric of a row **regressed** when its relative delta exceeds ``max_regression`` AND its
   interval lies above zero; **improved** when the delta is below ``-max_regression`` AND the
   interval lies below zero; otherwise "no significant change" (noise is never a regression,
   and neither is a statistically clear but small change). Error rates use a Wald interval of
   the difference of proportions and ``max_error_rate_increase`` (absolute).

Two runs of 1M rows each compare in well under a second (one sort per group and run).

>>> from taskforge_perf.synthetic import synthetic_events
>>> base = synthetic_events(50_000, seed=1)
>>> cand = synthetic_events(50_000, seed=2, slowdown={"GET /health": 1.3})
>>> c = compare(base, cand)
>>> c.table().filter(verdict="regressed")["endpoint"].to_list()
['GET /health']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import polars as pl

from taskforge_perf import analysis
from taskforge_perf.analysis import Frame, _interp_indices, _keys, _lazy, _sort_keys

if TYPE_CHECKING:
    import altair as alt

__all__ = ["Comparison", "Trend", "compare", "compare_series"]

_LEVELS = {"p50": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99_9": 0.999}
_NO_CHANGE = "no significant change"


def _unwrap(run: Any) -> tuple[Frame, Mapping[str, Any] | None]:
    """Accept a frame, or a Run-like object with ``.events`` (and ``.meta``)."""
    if isinstance(run, pl.DataFrame | pl.LazyFrame):
        return run, None
    load_events = getattr(run, "load_events", None)
    if callable(load_events):  # a Run: compare the load itself, not setup/teardown auth traffic
        return load_events(), getattr(run, "meta", None)
    events = getattr(run, "events", None)
    if isinstance(events, pl.DataFrame | pl.LazyFrame):
        return events, getattr(run, "meta", None)
    raise TypeError(f"expected an events frame or a Run (got {type(run).__name__})")


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


def _verdict_expr(rel: pl.Expr, lo: pl.Expr, hi: pl.Expr, thr: float) -> pl.Expr:
    return (
        pl.when((rel > thr) & (lo > 0))
        .then(pl.lit("regressed"))
        .when((rel < -thr) & (hi < 0))
        .then(pl.lit("improved"))
        .otherwise(pl.lit(_NO_CHANGE))
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    """The result of ``compare``: see ``table()``, ``verdict()``, ``passed``, ``warnings``."""

    by: tuple[str, ...]
    metrics: tuple[str, ...]
    confidence: float
    max_regression: float
    max_error_rate_increase: float
    warnings: tuple[str, ...]
    _table: pl.DataFrame = field(repr=False)
    _spectra: pl.DataFrame = field(repr=False)

    def table(self) -> pl.DataFrame:
        """Per group: n, p50/p95/p99 base and cand (ms), deltas, relative deltas, CIs, verdicts.

        For each metric ``m``: ``m_base_ms m_cand_ms m_delta_ms m_rel m_ci_low_ms m_ci_high_ms
        m_rel_ci_low m_rel_ci_high m_verdict``; then ``error_rate_base error_rate_cand
        error_rate_delta error_rate_ci_low error_rate_ci_high error_rate_verdict`` and ``verdict``
        (regressed if any metric or the error rate regressed, improved if any improved and none
        regressed, else "no significant change"; "only in baseline"/"only in candidate").
        """
        return self._table

    def regressions(self, max_p95_regression: float | None = None) -> pl.DataFrame:
        """Rows that regressed.

        Without ``max_p95_regression``: any metric or the error rate regressed at the thresholds
        given to ``compare`` (the row ``verdict``). With it: the gate of ``verdict`` — p95 judged
        at that threshold, or the error rate — other metrics stay informational.
        """
        t = self._table
        if max_p95_regression is None:
            return t.filter(pl.col("verdict") == "regressed")
        if "p95" not in self.metrics:
            raise ValueError("verdict needs 'p95' in compare(metrics=...)")
        p95 = _verdict_expr(
            pl.col("p95_rel"), pl.col("p95_ci_low_ms"), pl.col("p95_ci_high_ms"), max_p95_regression
        )
        t = t.with_columns(p95_verdict=p95)
        gate = (pl.col("p95_verdict") == "regressed") | (pl.col("error_rate_verdict") == "regressed")
        return t.filter(gate.fill_null(False))

    @property
    def passed(self) -> bool:
        """True when no row regressed at the thresholds given to ``compare``."""
        return self.regressions().is_empty()

    def verdict(self, max_p95_regression: float = 0.10) -> str:
        """The gate, in one line: FAIL when a group's p95 regressed beyond ``max_p95_regression``
        (interval above zero) or its error rate regressed; else PASS."""
        bad = self.regressions(max_p95_regression)
        if bad.is_empty():
            n = self._table.height
            improved = self._table.filter(pl.col("verdict") == "improved").height
            extra = f", {improved} improved" if improved else ""
            return (
                f"PASS: no regression beyond {max_p95_regression:.0%} in p95 "
                f"({n} groups compared{extra}; {self.confidence:.0%} intervals)"
            )
        parts = []
        for row in bad.iter_rows(named=True):
            name = " / ".join(str(row[k]) for k in self.by) or "all"
            if row.get("p95_verdict") == "regressed":
                parts.append(
                    f"{name} p95 {row['p95_rel']:+.1%} "
                    f"(CI {row['p95_rel_ci_low']:+.1%}..{row['p95_rel_ci_high']:+.1%})"
                )
            else:
                parts.append(f"{name} error rate {row['error_rate_delta']:+.2%}")
        return f"FAIL: {len(parts)} regressed: " + "; ".join(parts)

    def chart(self, *, measure: str = "latency") -> alt.Chart:
        """Overlaid percentile spectra of baseline and candidate (colour: run)."""

        from taskforge_perf.charts import _title, percentiles

        return percentiles(self._spectra, measure=measure).properties(
            title=_title("Latency by percentile: baseline vs candidate", "HDR view")
        )

    def delta_chart(self) -> alt.LayerChart:
        """Relative delta per group and metric, with its interval and the threshold."""
        import altair as alt

        from taskforge_perf.charts import _title, data_values

        keys = list(self.by)
        group = (
            pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator=" · ")
            if keys
            else pl.lit("all")
        )
        long = pl.concat(
            [
                self._table.select(
                    group=group,
                    metric=pl.lit(m),
                    rel=pl.col(f"{m}_rel") * 100,
                    lo=pl.col(f"{m}_rel_ci_low") * 100,
                    hi=pl.col(f"{m}_rel_ci_high") * 100,
                    verdict=pl.col(f"{m}_verdict"),
                )
                for m in self.metrics
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
            shape=alt.Shape("verdict:N", title="verdict"),
            tooltip=[
                "group:N",
                "metric:N",
                alt.Tooltip("rel:Q", format="+.1f", title="%"),
                alt.Tooltip("lo:Q", format="+.1f"),
                alt.Tooltip("hi:Q", format="+.1f"),
                "verdict:N",
            ],
        )
        thr = self.max_regression * 100
        rules = (
            alt.Chart(data_values(pl.DataFrame({"x": [0.0, thr, -thr]})))
            .mark_rule(strokeDash=[4, 3], color="#888")
            .encode(x="x:Q")
        )
        return alt.LayerChart(
            layer=[rules, bars, points],
            title=_title(
                "Percentile change, candidate vs baseline",
                f"{self.confidence:.0%} intervals; dashed: 0 and ±{thr:g}%",
            ),
            width=560,
        )


def _meta_warnings(b: Mapping[str, Any], c: Mapping[str, Any]) -> list[str]:
    out = []
    for key, label in (
        ("plan", "plans"),
        ("mix", "request mixes"),
        ("target_version", "target versions"),
    ):
        if key in b and key in c and b[key] != c[key]:
            out.append(f"different {label}: baseline {b[key]!r}, candidate {c[key]!r}")
    db, dc = b.get("duration_s"), c.get("duration_s")
    if db and dc and abs(dc - db) / db > 0.20:
        out.append(f"durations differ by more than 20%: baseline {db:g} s, candidate {dc:g} s")
    return out


def _span_s(events: Frame) -> float | None:
    r = _lazy(events).select(pl.col("t_start").min(), pl.col("t_end").max()).collect().row(0)
    return None if r[0] is None else (r[1] - r[0]) / 1e9


def compare(
    baseline_events: Any,
    candidate_events: Any,
    *,
    by: str | Sequence[str] | None = ("endpoint",),
    metrics: Sequence[str] = ("p50", "p95", "p99"),
    confidence: float = 0.95,
    max_regression: float = 0.10,
    max_error_rate_increase: float = 0.01,
    min_samples: int = 100,
    baseline_meta: Mapping[str, Any] | None = None,
    candidate_meta: Mapping[str, Any] | None = None,
) -> Comparison:
    """Compare two runs per group (see the module docstring for the statistics).

    ``baseline_events``/``candidate_events`` are HTTP events frames (or Run-like objects with
    ``.events``/``.meta``). ``metrics`` from p50, p75, p90, p95, p99, p99_9. Meta keys read for
    warnings: "plan", "mix", "duration_s", "target_version".
    """
    unknown = [m for m in metrics if m not in _LEVELS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {list(_LEVELS)} (got {list(metrics)})")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be within [0.5, 1) (got {confidence})")
    if max_regression < 0:
        raise ValueError(f"max_regression must be >= 0 (got {max_regression})")
    base_ev, bm = _unwrap(baseline_events)
    cand_ev, cm = _unwrap(candidate_events)
    bm, cm = dict(baseline_meta or bm or {}), dict(candidate_meta or cm or {})
    bm.setdefault("duration_s", _span_s(base_ev))
    cm.setdefault("duration_s", _span_s(cand_ev))
    keys = _keys(by)
    metrics = tuple(metrics)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    b = _quantiles_with_ci(base_ev, keys, metrics, z)
    c = _quantiles_with_ci(cand_ev, keys, metrics, z)
    t = (
        b.join(c, on=keys, how="full", coalesce=True, nulls_equal=True, suffix="_c")
        if keys
        else pl.concat([b, c.rename(lambda s: s + "_c")], how="horizontal")
    )
    cols: list[pl.Expr] = [
        pl.col("n").fill_null(0).alias("n_base"),
        pl.col("n_c").fill_null(0).alias("n_cand"),
    ]
    for m in metrics:
        qb, qc = pl.col(m), pl.col(f"{m}_c")
        se = (
            (pl.col(f"{m}_hi") - pl.col(f"{m}_lo")) ** 2 + (pl.col(f"{m}_hi_c") - pl.col(f"{m}_lo_c")) ** 2
        ).sqrt() / 2  # z * sqrt(se_b²+se_c²)
        d = qc - qb
        cols += [
            (qb / 1e6).alias(f"{m}_base_ms"),
            (qc / 1e6).alias(f"{m}_cand_ms"),
            (d / 1e6).alias(f"{m}_delta_ms"),
            (d / qb).alias(f"{m}_rel"),
            ((d - se) / 1e6).alias(f"{m}_ci_low_ms"),
            ((d + se) / 1e6).alias(f"{m}_ci_high_ms"),
            ((d - se) / qb).alias(f"{m}_rel_ci_low"),
            ((d + se) / qb).alias(f"{m}_rel_ci_high"),
        ]
    pb, pc = pl.col("errors") / pl.col("n"), pl.col("errors_c") / pl.col("n_c")
    e_se = z * (pb * (1 - pb) / pl.col("n") + pc * (1 - pc) / pl.col("n_c")).sqrt()
    cols += [
        pb.alias("error_rate_base"),
        pc.alias("error_rate_cand"),
        (pc - pb).alias("error_rate_delta"),
        (pc - pb - e_se).alias("error_rate_ci_low"),
        (pc - pb + e_se).alias("error_rate_ci_high"),
    ]
    t = t.select(*keys, *cols)
    t = t.with_columns(
        *[
            _verdict_expr(
                pl.col(f"{m}_rel"),
                pl.col(f"{m}_ci_low_ms"),
                pl.col(f"{m}_ci_high_ms"),
                max_regression,
            ).alias(f"{m}_verdict")
            for m in metrics
        ],
        _verdict_expr(
            pl.col("error_rate_delta"),
            pl.col("error_rate_ci_low"),
            pl.col("error_rate_ci_high"),
            max_error_rate_increase,
        ).alias("error_rate_verdict"),
    )
    verdicts = [pl.col(f"{m}_verdict") for m in metrics] + [pl.col("error_rate_verdict")]
    t = t.with_columns(
        verdict=pl.when(pl.col("n_cand") == 0)
        .then(pl.lit("only in baseline"))
        .when(pl.col("n_base") == 0)
        .then(pl.lit("only in candidate"))
        .when(pl.any_horizontal(*[v == "regressed" for v in verdicts]))
        .then(pl.lit("regressed"))
        .when(pl.any_horizontal(*[v == "improved" for v in verdicts]))
        .then(pl.lit("improved"))
        .otherwise(pl.lit(_NO_CHANGE))
    )
    t = _sort_keys(t, keys)

    warnings = _meta_warnings(bm, cm)
    for row in t.iter_rows(named=True):
        name = " / ".join(str(row[k]) for k in keys) or "all"
        if row["verdict"].startswith("only in"):
            warnings.append(f"{name}: {row['verdict']}")
        elif min(row["n_base"], row["n_cand"]) < min_samples:
            warnings.append(
                f"{name}: fewer than {min_samples} requests in a run "
                f"({row['n_base']} vs {row['n_cand']}); tail percentiles are unreliable"
            )
    spectra = pl.concat(
        [
            analysis.percentile_spectrum(base_ev).with_columns(run=pl.lit("baseline")),
            analysis.percentile_spectrum(cand_ev).with_columns(run=pl.lit("candidate")),
        ]
    ).select("run", pl.exclude("run"))
    return Comparison(
        by=tuple(keys),
        metrics=metrics,
        confidence=confidence,
        max_regression=max_regression,
        max_error_rate_increase=max_error_rate_increase,
        warnings=tuple(warnings),
        _table=t,
        _spectra=spectra,
    )


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
        return (
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
            named.append((item[0], _unwrap(item[1])[0]))
        else:
            ev, meta = _unwrap(item)
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
