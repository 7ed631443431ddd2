"""Baseline vs candidate: one pre-declared, family-wise gate with intervals that hold for load tests.

**The gate.** Per group (endpoint by default) two tests, declared before looking: one latency
metric (``gate_metric``, p95 by default) and the error rate. Other percentiles are shown with
their intervals, never gated. ``Comparison.verdict`` is the one decision (passed / failed /
inconclusive, with reasons); ``Comparison.passed`` is its field, and the CLI, the report and the
notebooks print that same object.

**Decisions against the threshold** (as Criterion.rs does with its noise threshold): with ``r``
the candidate/baseline ratio of the gated quantile,

- *regressed* when the lower bound of ``r`` lies above ``1 + tolerance``: the one-sided
  p-values of all gated tests of the comparison are adjusted with Holm's step-down method
  (Holm 1979), so the chance that an identical build FAILs is at most ``alpha`` (5%) per
  comparison, whatever the dependence between endpoints;
- *within* when the upper ``1 - alpha`` bound lies below ``1 + max_regression`` (an
  intersection-union test: every test must show it, so "passed" is also an alpha-level claim);
- otherwise *inconclusive*, with how many more requests (one run per side) or runs would decide
  it at 80% power, from the observed variance.

A clear regression that is smaller than ``max_regression`` is "within". The error rate uses the
same rules on the difference of proportions with Newcombe's hybrid score interval (Newcombe 1998,
method 10; Wilson intervals per side) against ``error_tolerance`` / ``max_error_rate_increase``.
Latency covers answered rows of the load phases (``schema.answered_expr``); the error rate counts
the rows the target saw (``schema.sent_expr``). The comparison is on the log scale (ratios).

**One run per side.** Requests are not independent (slow periods, GC pauses, queueing). The
variance of each quantile is estimated from batch means over contiguous time blocks of the run
(the non-overlapping batch means of Conway 1963 / Schmeiser 1982; compare the block bootstrap of
Künsch 1989 and Politis & Romano 1994), floored at the i.i.d. value, with Student-t degrees of
freedom and the two sides combined on the log scale (Welch-Satterthwaite). Too few tail rows
(ranks outside the sample, or an effective ``n (1 - q)`` under ``min_tail``) give
"insufficient data": never a clamped interval. One run per side cannot cover run-to-run
variation (a different machine state, a different warm-up): it sees only the noise inside a run.

**Runs as replicates.** ``compare([b1, b2, b3], [c1, c2, c3])`` takes each run's log quantile as
one observation and compares the means with Welch's t test (Kalibera & Jones 2013: the run, not
the request, is the unit of repetition). 3-5 runs per side, interleaved (``compare_interleaved``).

>>> from taskforge_perf.synthetic import synthetic_events
>>> base = synthetic_events(50_000, seed=1)
>>> cand = synthetic_events(50_000, seed=2, slowdown={"GET /health": 1.5})
>>> c = compare(base, cand)
>>> c.verdict.status, c.passed
('failed', False)
>>> c.table().filter(verdict="failed")["endpoint"].to_list()
['GET /health']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from taskforge_perf import analysis
from taskforge_perf.analysis import Frame, _keys, _lazy, _sort_keys
from taskforge_perf.compare_stats import LEVELS, GateParams, gate_table, side_stats
from taskforge_perf.compare_text import explain, markdown, meta_warnings
from taskforge_perf.results import LOAD_EXCLUDED, load_run
from taskforge_perf.schema import answered_expr
from taskforge_perf.trend import Trend, compare_series

if TYPE_CHECKING:
    import altair as alt

__all__ = ["Comparison", "Trend", "Verdict", "compare", "compare_series"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The one decision of a comparison: ``status`` passed / failed / inconclusive, and why.

    ``tests`` holds one row per gated test (group, test, estimate, interval, Holm-adjusted p,
    decision, what would decide it). ``str(verdict)`` is a one-line summary starting with PASS,
    FAIL or INCONCLUSIVE (for CI logs and gates); ``verdict.explain()`` is the same decision in
    several lines for people, and a notebook displays the verdict as Markdown (each regressed or
    undecided test with its estimate, interval and what would decide it). Calling it re-decides at
    another threshold: ``cmp.verdict(max_p95_regression=0.2)`` (the pre-1.x call style).
    """

    status: str
    reasons: tuple[str, ...]
    tests: pl.DataFrame = field(repr=False)
    gate: GateParams
    _again: Callable[..., Verdict] | None = field(default=None, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        """Every gated test is within its threshold."""
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        """At least one gated test regressed (family-wise error rate ``gate.alpha``)."""
        return self.status == "failed"

    @property
    def inconclusive(self) -> bool:
        """Neither: more requests or runs are needed (see ``reasons``)."""
        return self.status == "inconclusive"

    def __str__(self) -> str:
        head = {"passed": "PASS", "failed": "FAIL", "inconclusive": "INCONCLUSIVE"}[self.status]
        return f"{head}: " + "; ".join(self.reasons)

    def explain(self, width: int = 100) -> str:
        """The decision in several lines: the gate, then every regressed and undecided test with
        its estimate and interval (and what would decide it), the tests within the gate named.

        >>> print(cmp.verdict.explain())  # doctest: +SKIP
        FAILED: 1 of 10 gated tests regressed
        gate: p95 at most +10% (a FAIL needs more than +1%), error rate at most +1.00 pp; ...
        """
        return explain(self, width=width)

    def _repr_markdown_(self) -> str:
        return markdown(self)

    def __call__(self, max_p95_regression: float | None = None, **gate: Any) -> Verdict:
        """The verdict at other gate settings (``max_regression``, ``alpha``, ...)."""
        if max_p95_regression is not None:
            if self.gate.metric != "p95":
                raise ValueError(f"max_p95_regression needs the p95 gate (this one gates {self.gate.metric})")
            gate["max_regression"] = max_p95_regression
        if self._again is None or not gate:
            return self
        return self._again(**gate)


@dataclass(frozen=True, slots=True)
class Comparison:
    """The result of ``compare``: ``verdict``, ``passed``, ``table()``, ``warnings``, charts."""

    by: tuple[str, ...]
    metrics: tuple[str, ...]
    gate: GateParams
    runs: tuple[int, int]
    warnings: tuple[str, ...]
    _table: pl.DataFrame = field(repr=False)
    _spectra: pl.DataFrame = field(repr=False)
    _sides: tuple[list[pl.DataFrame], list[pl.DataFrame]] = field(repr=False)

    def table(self) -> pl.DataFrame:
        """Per group: runs and answered rows per side; for each metric ``m`` ``m_base_ms m_cand_ms
        m_rel m_rel_ci_low m_rel_ci_high`` (two-sided ``1 - 2 alpha`` interval of the ratio - 1,
        null when the data are insufficient); ``error_rate_base error_rate_cand error_rate_delta
        error_rate_ci_low error_rate_ci_high``; the gated tests' ``*_p``, ``*_p_holm`` and
        ``*_decision`` (within / regressed / inconclusive / insufficient data); the row
        ``verdict`` (passed / failed / inconclusive / only in ...) and ``needed``."""
        return self._table

    @property
    def verdict(self) -> Verdict:
        """The one gate (see the module docstring)."""
        return _verdict(self._table, self.by, self.gate, self._again)

    @property
    def passed(self) -> bool:
        """``verdict.passed``."""
        return self.verdict.passed

    def regressions(self) -> pl.DataFrame:
        """Rows whose gated latency or error rate regressed."""
        return self._table.filter(pl.col("verdict") == "failed")

    def _again(self, **gate: Any) -> Verdict:
        params = dataclasses.replace(self.gate, **gate)
        _check_gate(params)
        t = gate_table(self._sides[0], self._sides[1], self.by, self.metrics, params)
        return _verdict(_sort_keys(t, list(self.by)), self.by, params, None)

    def chart(self, *, measure: str = "latency") -> alt.LayerChart:
        """Overlaid percentile spectra of baseline and candidate (colour: run)."""
        from taskforge_perf.charts import _title, percentiles

        return percentiles(self._spectra, measure=measure).properties(
            title=_title("Latency by percentile: baseline vs candidate", "HDR view")
        )

    def delta_chart(self) -> alt.LayerChart:
        """Relative change per group and metric, with its interval and the gate's threshold."""
        from taskforge_perf.compare_charts import delta_chart

        return delta_chart(self)


def _label(row: Mapping[str, Any], by: Sequence[str]) -> str:
    return " / ".join(str(row[k]) for k in by) or "all"


def _verdict(
    t: pl.DataFrame, by: Sequence[str], gate: GateParams, again: Callable[..., Verdict] | None
) -> Verdict:
    g = gate.metric
    tests: list[dict[str, Any]] = []
    for row in t.iter_rows(named=True):
        name = _label(row, by)
        for test, est, lo, hi, p, dec in (
            (g, f"{g}_rel", f"{g}_rel_ci_low", f"{g}_rel_ci_high", f"{g}_p_holm", f"{g}_decision"),
            (
                "error rate",
                "error_rate_delta",
                "error_rate_ci_low",
                "error_rate_ci_high",
                "error_rate_p_holm",
                "error_rate_decision",
            ),
        ):
            tests.append(
                {
                    "group": name,
                    "test": test,
                    "estimate": row[est],
                    "ci_low": row[lo],
                    "ci_high": row[hi],
                    "p_holm": row[p],
                    "decision": row[dec],
                    "needed": row["needed"],
                }
            )
    frame = pl.DataFrame(
        tests,
        schema={
            "group": pl.String,
            "test": pl.String,
            "estimate": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
            "p_holm": pl.Float64,
            "decision": pl.String,
            "needed": pl.String,
        },
    )
    verdicts = t["verdict"].to_list() if t.height else []
    if "failed" in verdicts:
        status = "failed"
    elif verdicts and all(v == "passed" for v in verdicts):
        status = "passed"
    else:
        status = "inconclusive"
    reasons: list[str] = []
    for r in tests:
        fmt = "+.1%" if r["test"] == g else "+.2%"
        ci = (
            f" ({1 - 2 * gate.alpha:.0%} CI {r['ci_low']:{fmt}}..{r['ci_high']:{fmt}})"
            if r["ci_low"] is not None
            else ""
        )
        est = f" {r['estimate']:{fmt}}" if r["estimate"] is not None else ""
        if status == "failed" and r["decision"] == "regressed":
            reasons.append(f"{r['group']} {r['test']}{est}{ci}, Holm p={r['p_holm']:.2g}")
        elif status == "inconclusive" and r["decision"] in ("inconclusive", "insufficient data", "missing"):
            reasons.append(f"{r['group']} {r['test']} {r['decision']}{est}{ci}")
    if status == "inconclusive":
        needed = sorted({n for n in t["needed"].drop_nulls().to_list()}) if t.height else []
        if needed:
            reasons.append("to decide: " + " | ".join(needed))
        if not t.height:
            reasons.append("no groups to compare")
    if status == "passed":
        reasons.append(
            f"no regression beyond {gate.max_regression:.0%} in {g} nor {gate.max_error_rate_increase:.1%} "
            f"in error rate ({t.height} groups; {gate.alpha:.0%} family-wise false-alarm rate)"
        )
    return Verdict(status=status, reasons=tuple(reasons), tests=frame, gate=gate, _again=again)


def _as_runs(x: Any) -> list[tuple[Frame, Mapping[str, Any] | None]]:
    """A frame, a Run, a saved run folder, or a list of them -> [(load rows, meta)]."""
    if isinstance(x, list | tuple):
        return [r for item in x for r in _as_runs(item)]
    if isinstance(x, str | Path):
        x = load_run(x)
    if isinstance(x, pl.DataFrame | pl.LazyFrame):
        return [
            (_lazy(x).filter(~pl.col("phase").cast(pl.String).is_in(LOAD_EXCLUDED).fill_null(False)), None)
        ]
    load_events = getattr(x, "load_events", None)
    if callable(load_events):  # a Run: compare the load itself, not setup/teardown auth traffic
        return [(load_events(), getattr(x, "meta", None))]
    raise TypeError(f"expected an events frame, a Run or a run folder (got {type(x).__name__})")


def _span_s(events: Frame) -> float | None:
    r = _lazy(events).select(pl.col("t_start").min(), pl.col("t_end").max()).collect().row(0)
    return None if r[0] is None else (r[1] - r[0]) / 1e9


def _check_gate(p: GateParams) -> None:
    if p.metric not in LEVELS:
        raise ValueError(f"gate_metric must be one of {list(LEVELS)} (got {p.metric!r})")
    if not 0 < p.alpha < 0.5:
        raise ValueError(f"alpha must be within (0, 0.5) (got {p.alpha}); 0.05 is the usual choice")
    if p.max_regression < 0 or p.tolerance < 0:
        raise ValueError("max_regression and tolerance must be >= 0 (fractions: 0.10 = 10%)")
    if p.batches < 2:
        raise ValueError(f"batches must be >= 2 (got {p.batches})")


def compare(
    baseline: Any,
    candidate: Any,
    *,
    by: str | Sequence[str] | None = ("endpoint",),
    metrics: Sequence[str] = ("p50", "p95", "p99"),
    gate_metric: str = "p95",
    max_regression: float = 0.10,
    tolerance: float = 0.01,
    max_error_rate_increase: float = 0.01,
    error_tolerance: float = 0.0,
    alpha: float = 0.05,
    batches: int = 6,
    min_tail: float = 10.0,
    baseline_meta: Mapping[str, Any] | None = None,
    candidate_meta: Mapping[str, Any] | None = None,
) -> Comparison:
    """Compare a baseline with a candidate per group (see the module docstring for the method).

    ``baseline``/``candidate``: a Run, a saved run folder, an events frame, or a list of them
    (several runs per side: runs are the replicates). ``metrics`` (shown) from p50, p75, p90,
    p95, p99, p99_9; ``gate_metric`` (gated, with the error rate) must be among them. Fractions:
    ``max_regression=0.10`` allows +10%; ``tolerance`` is the change a FAIL must exceed;
    ``alpha`` the family-wise false-alarm rate of one comparison.

    >>> from taskforge_perf.synthetic import synthetic_events
    >>> compare(synthetic_events(300, seed=1), synthetic_events(300, seed=2)).verdict.status
    'inconclusive'
    """
    unknown = [m for m in metrics if m not in LEVELS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {list(LEVELS)} (got {list(metrics)})")
    metrics = tuple(metrics) if gate_metric in metrics else (*metrics, gate_metric)
    params = GateParams(
        metric=gate_metric,
        max_regression=max_regression,
        tolerance=tolerance,
        max_error_rate_increase=max_error_rate_increase,
        error_tolerance=error_tolerance,
        alpha=alpha,
        batches=batches,
        min_tail=min_tail,
    )
    _check_gate(params)
    base_runs, cand_runs = _as_runs(baseline), _as_runs(candidate)
    if not base_runs or not cand_runs:
        raise ValueError("compare needs at least one run on each side")
    keys = _keys(by)
    sides = (
        [side_stats(ev, keys, metrics, batches) for ev, _ in base_runs],
        [side_stats(ev, keys, metrics, batches) for ev, _ in cand_runs],
    )
    t = _sort_keys(gate_table(sides[0], sides[1], keys, metrics, params), keys)

    warnings: list[str] = []
    if len(base_runs) == 1 and len(cand_runs) == 1:
        bm = dict(baseline_meta or base_runs[0][1] or {})
        cm = dict(candidate_meta or cand_runs[0][1] or {})
        bm.setdefault("duration_s", _span_s(base_runs[0][0]))
        cm.setdefault("duration_s", _span_s(cand_runs[0][0]))
        warnings += meta_warnings(bm, cm)
        warnings.append("one run per side: run-to-run variation is not covered (compare 3-5 runs per side)")
    for row in t.iter_rows(named=True):
        name = _label(row, keys)
        if row["verdict"].startswith("only in"):
            warnings.append(f"{name}: {row['verdict']}")
        elif row[f"{gate_metric}_decision"] == "insufficient data":
            warnings.append(
                f"{name}: too few requests for {gate_metric} "
                f"({row['n_base']} vs {row['n_cand']}): insufficient data"
            )

    def spectrum(runs: list[tuple[Frame, Any]]) -> pl.DataFrame:
        rows = pl.concat([_lazy(ev).filter(answered_expr()) for ev, _ in runs])
        return analysis.percentile_spectrum(rows)

    spectra = pl.concat(
        [
            spectrum(base_runs).with_columns(run=pl.lit("baseline")),
            spectrum(cand_runs).with_columns(run=pl.lit("candidate")),
        ]
    ).select("run", pl.exclude("run"))
    return Comparison(
        by=tuple(keys),
        metrics=metrics,
        gate=params,
        runs=(len(base_runs), len(cand_runs)),
        warnings=tuple(warnings),
        _table=t,
        _spectra=spectra,
        _sides=sides,
    )
