"""The statistics of ``compare``: per-run estimates and the pre-declared, family-wise gate.

Per run and group (``side_stats``): answered rows of the load give the latency quantiles; rows the
target saw (``schema.sent_expr``) are the denominator of the error rate. Each quantile ``Q`` gets a
standard error of ``log Q`` that holds for time-correlated traffic: the rows are cut, in time order,
into ``batches`` contiguous blocks; the variance of the fraction of each block's rows at or below
``Q`` (batch means) estimates ``Var(F(Q))`` (floored at the i.i.d. binomial variance), and the
order statistics at ranks ``n (q -/+ 1.96 sd)`` turn it into the log scale without a density
estimate. When those ranks leave the sample, or the effective tail count ``n_eff (1 - q)`` is
below ``min_tail``, the quantile is "insufficient data": never clamped.

``gate_table`` puts sides of one or several runs together per group; see ``taskforge_perf.compare``
for the decision rules and references.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from taskforge_perf.analysis import Frame, _lazy
from taskforge_perf.compare_math import holm, newcombe_diff, newcombe_pvalue, t_cdf, t_ppf, z_ppf
from taskforge_perf.schema import answered_expr, sent_expr

__all__ = ["LEVELS", "GateParams", "family_verdicts", "gate_table", "side_stats"]

LEVELS = {"p50": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99_9": 0.999}
_Z_WINDOW = 1.959964  # half-width of the rank window, in standard deviations
_INF_DF = 1e9


@dataclass(frozen=True, slots=True, kw_only=True)
class GateParams:
    """The pre-declared gate: one latency metric and the error rate per group, at family level alpha."""

    metric: str = "p95"
    max_regression: float = 0.10
    tolerance: float = 0.01
    max_error_rate_increase: float = 0.01
    error_tolerance: float = 0.0
    alpha: float = 0.05
    batches: int = 6
    min_tail: float = 10.0
    power: float = 0.8


def side_stats(events: Frame, keys: Sequence[str], metrics: Sequence[str], batches: int) -> pl.DataFrame:
    """Per group of one run: ``n`` (answered), ``sent``, ``errors`` and per metric ``m``:
    ``{m}_lq`` (log quantile, ns), ``{m}_var`` (variance of it), ``{m}_df``, ``{m}_neff``,
    ``{m}_ok`` (ranks inside the sample)."""
    keys = list(keys)
    gk = keys or ["_all"]
    lf = _lazy(events)
    if not keys:
        lf = lf.with_columns(_all=pl.lit(0))
    counts = (
        lf.filter(sent_expr())
        .group_by(gk)
        .agg(sent=pl.len(), errors=pl.col("error").is_not_null().sum())
        .collect()
    )
    rows = (
        lf.filter(answered_expr())
        .select(*gk, "t_start", lat=(pl.col("t_end") - pl.col("t_start")).clip(lower_bound=1))
        .sort([*gk, "t_start"], maintain_order=True)
        .with_columns(_blk=(pl.int_range(pl.len()).over(gk) * batches // pl.len().over(gk)))
        .collect()
    )
    qs = {m: LEVELS[m] for m in metrics}
    out = rows.group_by(gk).agg(
        n=pl.len(),
        _sorted=pl.col("lat").sort(),
        **{f"_{m}_q": pl.col("lat").quantile(q, interpolation="linear") for m, q in qs.items()},
    )
    # Fraction of each time block at or below the group's quantile, for every metric in one pass.
    blocks = (
        rows.lazy()
        .with_columns(
            **{
                f"_{m}_i": (pl.col("lat") <= pl.col("lat").quantile(q, interpolation="linear").over(gk))
                for m, q in qs.items()
            }
        )
        .group_by([*gk, "_blk"])
        .agg(*[pl.col(f"_{m}_i").mean() for m in qs])
        .group_by(gk)
        .agg(*[pl.col(f"_{m}_i").var().alias(f"_{m}_bv") for m in qs], _nb=pl.len())
        .collect()
    )
    out = out.join(blocks, on=gk, how="left", nulls_equal=True)
    for m, q in qs.items():
        out = out.with_columns(_bv=pl.col(f"_{m}_bv"))
        iid = q * (1 - q) / pl.col("n")
        bvar = (pl.col("_bv").fill_null(0.0) / pl.col("_nb")).fill_nan(0.0)
        var_f = pl.max_horizontal(iid, bvar)
        sd = var_f.sqrt()
        r_lo = (pl.col("n") * (q - _Z_WINDOW * sd)).floor().cast(pl.Int64)
        r_hi = (pl.col("n") * (q + _Z_WINDOW * sd)).ceil().cast(pl.Int64)
        out = out.with_columns(
            _rlo=r_lo, _rhi=r_hi, **{f"{m}_neff": q * (1 - q) / var_f}, _batched=bvar > iid
        ).with_columns(
            _ok=(pl.col("_rlo") >= 1) & (pl.col("_rhi") <= pl.col("n")) & (pl.col("_nb") >= 2),
        )
        x_lo = pl.col("_sorted").list.get((pl.col("_rlo") - 1).clip(0, pl.col("n") - 1)).cast(pl.Float64)
        x_hi = pl.col("_sorted").list.get((pl.col("_rhi") - 1).clip(0, pl.col("n") - 1)).cast(pl.Float64)
        se = (x_hi.log() - x_lo.log()) / (2 * _Z_WINDOW)
        out = out.with_columns(
            **{
                f"{m}_lq": pl.col(f"_{m}_q").log(),
                f"{m}_var": se**2,
                f"{m}_df": pl.when(pl.col("_batched")).then(pl.col("_nb") - 1.0).otherwise(_INF_DF),
                f"{m}_ok": pl.col("_ok"),
            }
        ).drop("_bv", "_rlo", "_rhi", "_batched", "_ok")
    out = out.drop("_sorted", "_nb", *[f"_{m}_q" for m in qs], *[f"_{m}_bv" for m in qs])
    out = counts.join(out, on=gk, how="full", coalesce=True, nulls_equal=True)
    out = out.with_columns(pl.col("n", "sent", "errors").fill_null(0))
    return out.drop("_all") if not keys else out


def _welch_df(v1: float, df1: float, v2: float, df2: float) -> float:
    num = (v1 + v2) ** 2
    den = (v1 * v1 / df1 if df1 < _INF_DF else 0.0) + (v2 * v2 / df2 if df2 < _INF_DF else 0.0)
    return num / den if den > 0 else _INF_DF


def _latency_test(
    b: list[dict[str, Any]], c: list[dict[str, Any]], m: str, p: GateParams
) -> dict[str, Any] | None:
    """Log-ratio estimate, its variance and df for metric ``m`` from per-run rows of each side."""
    q = LEVELS[m]
    tail_ok = all(r.get(f"{m}_ok") for r in b + c)
    if len(b) == 1 and len(c) == 1:
        if (
            not tail_ok
            or b[0][f"{m}_neff"] * (1 - q) < p.min_tail
            or c[0][f"{m}_neff"] * (1 - q) < p.min_tail
        ):
            return None
        d = c[0][f"{m}_lq"] - b[0][f"{m}_lq"]
        vb, vc = b[0][f"{m}_var"], c[0][f"{m}_var"]
        return {"d": d, "var": vb + vc, "df": _welch_df(vb, b[0][f"{m}_df"], vc, c[0][f"{m}_df"])}
    # Runs as replicates: each run's log quantile is one observation (Kalibera & Jones 2013).
    if not all(r["n"] * (1 - q) >= p.min_tail and r.get(f"{m}_lq") is not None for r in b + c):
        return None
    xb, xc = [r[f"{m}_lq"] for r in b], [r[f"{m}_lq"] for r in c]
    mb, mc = sum(xb) / len(xb), sum(xc) / len(xc)

    def s2(xs: list[float], mu: float) -> float:
        return sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)

    if len(b) >= 2 and len(c) >= 2:
        vb, vc = s2(xb, mb) / len(xb), s2(xc, mc) / len(xc)
        return {"d": mc - mb, "var": vb + vc, "df": _welch_df(vb, len(xb) - 1.0, vc, len(xc) - 1.0)}
    many, mu = (xb, mb) if len(xb) >= 2 else (xc, mc)
    var = s2(many, mu) * (1 / len(xb) + 1 / len(xc))  # the replicated side's run variance for both
    return {"d": mc - mb, "var": var, "df": len(many) - 1.0}


def _needed(gap: float, se: float, z_a: float, z_p: float) -> float:
    """Factor by which the sample must grow so that ``gap`` is resolved with the wanted power."""
    return math.inf if gap <= 0 else (se * (z_a + z_p) / gap) ** 2


def _runs_needed(k: int, gaps: Sequence[tuple[float, float]], se: float, power: float) -> int | None:
    """Smallest number of runs per side (>= k + 1) at which one of ``gaps`` ((gap, one-sided
    alpha)) is resolved with ``power``, the run variance staying as observed (Welch df ~ 2k - 2)."""
    for k2 in range(k + 1, 201):
        se2, df = se * math.sqrt(k / k2), 2.0 * k2 - 2.0
        if any(g > 0 and g >= (t_ppf(1 - a, df) + t_ppf(power, df)) * se2 for g, a in gaps):
            return k2
    return None


def gate_table(
    base: Sequence[pl.DataFrame],
    cand: Sequence[pl.DataFrame],
    keys: Sequence[str],
    metrics: Sequence[str],
    params: GateParams,
    family: Sequence[str] = (),
) -> pl.DataFrame:
    """One row per group: estimates, intervals (two-sided ``1 - 2 alpha``), Holm-adjusted gate tests
    (within each ``family`` of keys), decisions and the row ``verdict``."""
    keys = list(keys)
    groups: dict[tuple[Any, ...], tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for side, frames in ((0, base), (1, cand)):
        for f in frames:
            for r in f.iter_rows(named=True):
                groups.setdefault(tuple(r[k] for k in keys), ([], []))[side].append(r)
    a, g = params.alpha, params.metric
    rows: list[dict[str, Any]] = []
    for gk, (b, c) in groups.items():
        row: dict[str, Any] = dict(zip(keys, gk, strict=True))
        row.update(
            runs_base=len(b), runs_cand=len(c), n_base=sum(r["n"] for r in b), n_cand=sum(r["n"] for r in c)
        )
        for m in metrics:
            for label, rs in (("base", b), ("cand", c)):
                vals = [r[f"{m}_lq"] for r in rs if r.get(f"{m}_lq") is not None]
                row[f"{m}_{label}_ms"] = math.exp(sum(vals) / len(vals)) / 1e6 if vals else None
            est = _latency_test(b, c, m, params) if b and c else None
            row[f"{m}_rel"] = (
                row[f"{m}_cand_ms"] / row[f"{m}_base_ms"] - 1
                if row[f"{m}_base_ms"] and row[f"{m}_cand_ms"] is not None
                else None
            )
            if est is not None:
                se = math.sqrt(est["var"])
                t = t_ppf(1 - a, est["df"])
                row[f"{m}_rel_ci_low"] = math.exp(est["d"] - t * se) - 1
                row[f"{m}_rel_ci_high"] = math.exp(est["d"] + t * se) - 1
            else:
                row[f"{m}_rel_ci_low"] = row[f"{m}_rel_ci_high"] = None
            if m == g:
                row["_lat"] = est
        sb, eb = sum(r["sent"] for r in b), sum(r["errors"] for r in b)
        sc, ec = sum(r["sent"] for r in c), sum(r["errors"] for r in c)
        row.update(
            error_rate_base=eb / sb if sb else None,
            error_rate_cand=ec / sc if sc else None,
            _counts=(eb, sb, ec, sc),
        )
        row["error_rate_delta"] = row["error_rate_cand"] - row["error_rate_base"] if sb and sc else None
        if sb and sc:
            row["error_rate_ci_low"], row["error_rate_ci_high"] = newcombe_diff(eb, sb, ec, sc, z_ppf(1 - a))
        else:
            row["error_rate_ci_low"] = row["error_rate_ci_high"] = None
        rows.append(row)
    _decide(rows, keys, family, params)
    for row in rows:
        del row["_lat"], row["_counts"]
    # One schema whatever the order of the groups (and with all-null columns still Float64).
    f64, i64, s = pl.Float64(), pl.Int64(), pl.String()
    schema: dict[str, pl.DataType] = {k: (base or cand)[0].schema[k] for k in keys}
    schema |= {"runs_base": i64, "runs_cand": i64, "n_base": i64, "n_cand": i64}
    for m in metrics:
        for suffix in ("base_ms", "cand_ms", "rel", "rel_ci_low", "rel_ci_high"):
            schema[f"{m}_{suffix}"] = f64
    schema |= {f"{g}_p": f64, f"{g}_p_holm": f64, f"{g}_decision": s}
    for suffix in ("base", "cand", "delta", "ci_low", "ci_high", "p", "p_holm"):
        schema[f"error_rate_{suffix}"] = f64
    schema |= {"error_rate_decision": s, "verdict": s, "needed": s}
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema)


def _decide(rows: list[dict[str, Any]], keys: Sequence[str], family: Sequence[str], p: GateParams) -> None:
    """Holm within each family, then the decision of every test and row (in place)."""
    a, g = p.alpha, p.metric
    lat_thr, lat_tol = math.log1p(p.max_regression), math.log1p(p.tolerance)
    fams: dict[tuple[Any, ...], list[tuple[dict[str, Any], str, float]]] = {}
    for row in rows:
        fam = fams.setdefault(tuple(row[k] for k in family), [])
        est = row["_lat"]
        row[f"{g}_p"] = row["error_rate_p"] = None
        if est is not None:
            se = math.sqrt(est["var"])
            pv = 1.0 - t_cdf((est["d"] - lat_tol) / se, est["df"]) if se > 0 else float(est["d"] <= lat_tol)
            row[f"{g}_p"] = pv
            fam.append((row, f"{g}_p", pv))
        eb, sb, ec, sc = row["_counts"]
        if sb and sc:
            pv = newcombe_pvalue(eb, sb, ec, sc, p.error_tolerance)
            row["error_rate_p"] = pv
            fam.append((row, "error_rate_p", pv))
    for tests in fams.values():
        adj = holm([t[2] for t in tests])
        m = len(tests)
        for (row, name, _), pa in zip(tests, adj, strict=True):
            row[name + "_holm"] = pa
            row["_m"] = m
    z_p = z_ppf(p.power)
    for row in rows:
        est, m = row["_lat"], row.pop("_m", 1)
        needed: list[str] = []
        if row["runs_base"] == 0 or row["runs_cand"] == 0:
            row[f"{g}_decision"] = row["error_rate_decision"] = "missing"
            row["verdict"] = "only in candidate" if row["runs_base"] == 0 else "only in baseline"
            row[f"{g}_p_holm"] = row["error_rate_p_holm"] = None
            row["needed"] = None
            continue
        row.setdefault(f"{g}_p_holm", None)
        row.setdefault("error_rate_p_holm", None)
        replicated = max(row["runs_base"], row["runs_cand"]) > 1
        unit = "runs" if replicated else "requests"
        size = max(row["runs_base"], row["runs_cand"]) if replicated else min(row["n_base"], row["n_cand"])
        if est is None:
            dec = "insufficient data"
            if not replicated:
                q = LEVELS[g]
                needed.append(f"{g}: at least {math.ceil(p.min_tail / (1 - q) * 2):,} requests per side")
            else:
                needed.append(
                    f"{g}: at least {math.ceil(p.min_tail / (1 - LEVELS[g])):,} requests in every run"
                )
        else:
            se = math.sqrt(est["var"])
            upper = est["d"] + t_ppf(1 - a, est["df"]) * se
            if upper < lat_thr:
                dec = "within"
            elif row[f"{g}_p_holm"] < a:
                dec = "regressed"
            else:
                dec = "inconclusive"
                gaps = ((lat_thr - est["d"], a), (est["d"] - lat_tol, a / m))
                if replicated:
                    k2 = _runs_needed(size, gaps, se, p.power)
                    if k2 is not None:
                        needed.append(f"{g}: about {k2} runs per side")
                else:
                    f = min(_needed(gap, se, z_ppf(1 - aa), z_p) for gap, aa in gaps)
                    if math.isfinite(f):
                        needed.append(f"{g}: about {math.ceil(size * max(f, 1.0)):,} {unit} per side")
        row[f"{g}_decision"] = dec
        eb, sb, ec, sc = row["_counts"]
        if not (sb and sc):
            edec = "insufficient data"
        elif row["error_rate_ci_high"] < p.max_error_rate_increase:
            edec = "within"
        elif row["error_rate_p_holm"] < a:
            edec = "regressed"
        else:
            edec = "inconclusive"
            se = (row["error_rate_ci_high"] - row["error_rate_ci_low"]) / (2 * z_ppf(1 - a))
            d = row["error_rate_delta"]
            f = min(
                _needed(p.max_error_rate_increase - d, se, z_ppf(1 - a), z_p),
                _needed(d - p.error_tolerance, se, z_ppf(1 - a / m), z_p),
            )
            if math.isfinite(f):
                n_req = math.ceil(min(row["n_base"], row["n_cand"]) * max(f, 1.0))
                needed.append(f"error rate: about {n_req:,} requests per side in all")
        row["error_rate_decision"] = edec
        decs = (dec, edec)
        row["verdict"] = (
            "failed" if "regressed" in decs else "passed" if decs == ("within", "within") else "inconclusive"
        )
        row["needed"] = "; ".join(needed) or None


def family_verdicts(table: pl.DataFrame, family: Sequence[str]) -> pl.DataFrame:
    """The verdict of each family (one comparison): failed > inconclusive > passed."""
    v = pl.col("verdict")
    agg = [
        pl.when((v == "failed").any())
        .then(pl.lit("failed"))
        .when((v == "passed").all())
        .then(pl.lit("passed"))
        .otherwise(pl.lit("inconclusive"))
        .alias("verdict")
    ]
    if not family:
        return table.select(agg)
    return table.group_by(list(family)).agg(agg)
