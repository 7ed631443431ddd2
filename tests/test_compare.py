"""compare(): the one calibrated gate, runs as replicates, honest about too little data."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.compare import Comparison, compare, compare_series
from taskforge_perf.compare_math import holm, newcombe_diff, newcombe_pvalue, t_cdf, t_ppf, wilson
from taskforge_perf.compare_stats import side_stats
from taskforge_perf.synthetic import DEFAULT_ENDPOINTS, synthetic_events
from taskforge_perf.synthetic_noise import with_process

pytestmark = pytest.mark.timeout(60)


def ref_quantile(values: list[float], q: float) -> float:
    """numpy.quantile(values, q) (linear interpolation) by sorted-list math."""
    xs = sorted(values)
    h = (len(xs) - 1) * q
    lo = math.floor(h)
    return xs[lo] + (h - lo) * (xs[min(lo + 1, len(xs) - 1)] - xs[lo])


def walk(spec: Any) -> list[dict[str, Any]]:
    out, stack = [], [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            out.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def data_rows(spec: dict[str, Any]) -> int:
    rows = [len(v) for v in spec.get("datasets", {}).values()]
    rows += [
        len(n["data"]["values"])
        for n in walk(spec)
        if isinstance(n.get("data"), dict) and isinstance(n["data"].get("values"), list)
    ]
    return max(rows, default=0)


def encodings(spec: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for n in walk(spec):
        if isinstance(n.get("encoding"), dict):
            for ch, d in n["encoding"].items():
                if isinstance(d, dict) and "field" in d:
                    out.setdefault(ch, set()).add(d["field"])
    return out


SLOW = "POST /tasks resize-image"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
EQUAL = tuple(replace(e, weight=1.0) for e in DEFAULT_ENDPOINTS)


def per_endpoint(n: int, seed: int, **kw: Any) -> pl.DataFrame:
    """About ``n`` requests on each of the five endpoints."""
    return synthetic_events(5 * n, seed=seed, endpoints=EQUAL, **kw)


@pytest.fixture(scope="module")
def base() -> pl.DataFrame:
    return per_endpoint(5_000, seed=1)


@pytest.fixture(scope="module")
def regressed(base: pl.DataFrame) -> Comparison:
    return compare(base, per_endpoint(5_000, seed=2, slowdown={SLOW: 1.5}))


# --- the statistics, against known values ---------------------------------------------------------


def test_wilson_newcombe_t_and_holm_known_values() -> None:
    assert wilson(0, 10, 1.959964) == pytest.approx((0.0, 0.2775), abs=1e-4)  # Newcombe 1998, table I
    lo, hi = newcombe_diff(48, 80, 56, 70, 1.959964)  # Newcombe 1998, example (a), method 10
    assert (lo, hi) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert t_ppf(0.975, 10) == pytest.approx(2.2281, abs=1e-4)
    assert t_cdf(2.0, 5) == pytest.approx(0.94903, abs=1e-5)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 0/300 vs 4/300 (Fisher exact one-sided p = 0.062) is no evidence at a 5% family of 10 tests.
    assert newcombe_pvalue(0, 300, 4, 300, 0.0) > 0.005


def test_clear_regression_fails_on_that_endpoint_only(regressed: Comparison) -> None:
    v = regressed.verdict
    assert v.status == "failed" and v.failed and not regressed.passed
    t = regressed.table()
    assert t.filter(pl.col("verdict") == "failed")["endpoint"].cast(str).to_list() == [SLOW]
    row = t.filter(pl.col("endpoint") == SLOW).row(0, named=True)
    assert row["p95_rel"] == pytest.approx(0.5, abs=0.08)
    assert row["p95_rel_ci_low"] < row["p95_rel"] < row["p95_rel_ci_high"]
    assert row["p95_decision"] == "regressed" and row["p95_p_holm"] < 0.05
    assert str(v).startswith("FAIL:") and SLOW in str(v)
    tests = v.tests.filter(pl.col("decision") == "regressed")
    assert tests["group"].to_list() == [SLOW] and tests["test"].to_list() == ["p95"]
    # Other percentiles are shown, not gated: p99 has no decision column.
    assert "p99_rel" in t.columns and "p99_decision" not in t.columns


def test_verdict_explains_itself_in_lines_for_people(regressed: Comparison) -> None:
    v = regressed.verdict
    assert "\n" not in str(v)  # the one-line form CI logs and gates read stays one line
    text = v.explain()
    lines = text.splitlines()
    assert lines[0] == "FAILED: 1 of 10 gated tests regressed" and len(lines) > 5
    assert all(len(line) <= 100 for line in lines)
    assert lines[1].startswith(
        "gate: p95 at most +10% (a FAIL needs more than +1%), error rate at most +1.00 pp"
    )
    row = v.tests.filter((pl.col("group") == SLOW) & (pl.col("test") == "p95")).row(0, named=True)
    want = (
        f"  {SLOW}  p95  {row['estimate']:+.1%}  (90% CI {row['ci_low']:+.1%} .. {row['ci_high']:+.1%}, "
        f"Holm p={row['p_holm']:.2g})"
    )
    assert lines[lines.index("regressed:") + 1] == want
    assert "undecided:" not in lines
    within = text[text.index("within the gate (9): ") :]
    assert "GET /health p95" in within and f"{SLOW} error rate" in within
    md = v._repr_markdown_()
    assert md.startswith("**FAILED: 1 of 10 gated tests regressed**")
    assert f"| {SLOW} | p95 | **regressed** | {row['estimate']:+.1%} |" in md


def test_an_undecided_verdict_says_what_would_decide_each_test() -> None:
    c = compare(per_endpoint(60, seed=5), per_endpoint(60, seed=6, slowdown={SLOW: 3.0}))
    v = c.verdict
    lines = v.explain().splitlines()
    undecided = v.tests.filter(pl.col("decision") != "within").height
    assert lines[0] == f"INCONCLUSIVE: {undecided} of 10 gated tests undecided"
    at = lines.index(
        f"  {SLOW}  p95  insufficient data: "
        + f"{v.tests.filter(pl.col('group') == SLOW)['estimate'][0]:+.1%}  (no interval)"
    )
    needed = c.table().filter(pl.col("endpoint") == SLOW)["needed"][0]
    own = [p.removeprefix("p95: ") for p in needed.split("; ") if p.startswith("p95: ")]
    assert own and lines[at + 1] == f"    to decide: {own[0]}"  # its own part, not the error rate's
    md = v._repr_markdown_()
    assert md.startswith("**INCONCLUSIVE") and f"| {SLOW} | p95 | **insufficient data** |" in md
    assert f"| {own[0]} |" in md


def test_old_call_style_redecides_at_another_threshold(regressed: Comparison) -> None:
    again = regressed.verdict(max_p95_regression=0.8)
    assert again.gate.max_regression == 0.8 and not again.failed
    assert regressed.verdict(max_p95_regression=0.8).status == again.status
    assert regressed.verdict().status == "failed"  # no argument: the same verdict


def test_identical_and_same_build_runs_do_not_fail(base: pl.DataFrame) -> None:
    assert not compare(base, base).verdict.failed
    big = compare(per_endpoint(20_000, seed=3), per_endpoint(20_000, seed=4))
    assert big.verdict.status == "passed", big.verdict
    assert big.passed and set(big.table()["p95_decision"]) == {"within"}


def test_small_samples_are_inconclusive_never_clamped() -> None:
    c = compare(per_endpoint(60, seed=5), per_endpoint(60, seed=6, slowdown={SLOW: 3.0}))
    assert c.verdict.status == "inconclusive"
    t = c.table()
    assert set(t["p95_decision"]) == {"insufficient data"}
    assert t["p95_rel_ci_low"].null_count() == t.height  # no interval rather than a clamped one
    assert "at least" in str(c.verdict) and any("insufficient data" in w for w in c.warnings)


def test_small_real_regression_within_the_allowance_passes() -> None:
    c = compare(per_endpoint(20_000, seed=7), per_endpoint(20_000, seed=8, slowdown={SLOW: 1.04}))
    row = c.table().filter(pl.col("endpoint") == SLOW).row(0, named=True)
    assert row["p95_rel_ci_high"] < 0.10 and row["p95_decision"] == "within"


def test_holm_adjusts_across_the_family(base: pl.DataFrame) -> None:
    cand = per_endpoint(5_000, seed=9, slowdown={SLOW: 1.12})
    t = compare(base, cand).table()
    ps = t["p95_p"].to_list() + t["error_rate_p"].to_list()
    adj = t["p95_p_holm"].to_list() + t["error_rate_p_holm"].to_list()
    assert adj == pytest.approx(holm(ps))
    assert min(adj) == pytest.approx(min(1.0, len(ps) * min(ps)))
    one = compare(base, cand, by=None).table()  # a family of two tests
    assert one["p95_p_holm"].item() <= 2 * one["p95_p"].item() + 1e-12


def test_autocorrelation_widens_the_interval() -> None:
    ev = per_endpoint(20_000, seed=10)
    slow = with_process(ev, process="autocorrelated", seed=1, sd=0.3)
    iid = side_stats(ev, ["endpoint"], ["p95"], 6)["p95_var"].mean()
    corr = side_stats(slow, ["endpoint"], ["p95"], 6)["p95_var"].mean()
    assert corr > 2 * iid  # batch means see the machine-wide slow periods; i.i.d. ranks would not


def test_latency_uses_answered_rows_and_error_rate_sent_rows() -> None:
    b = per_endpoint(3_000, seed=11).filter(pl.col("error").is_null())
    # The candidate's extra rows: tester-side (cancelled, very slow) and target failures (timeouts).
    extra = b.head(400).with_columns(
        error=pl.lit("cancelled", dtype=pl.Categorical), t_end=pl.col("t_start") + 10**10
    )
    c = pl.concat([b, extra])
    t = compare(b, c).table()
    assert (t["p95_rel"].abs() < 1e-9).all()  # cancelled rows are not in the percentiles
    assert (t["error_rate_cand"] == 0).all()  # nor in the error rate's denominator or numerator
    timeouts = b.head(400).with_columns(error=pl.lit("timeout", dtype=pl.Categorical))
    t2 = compare(b, pl.concat([b, timeouts])).table()
    assert (t2["error_rate_cand"] > 0).all() and (t2["p95_rel"].abs() < 1e-9).all()


def test_error_rate_regression_fails() -> None:
    b = per_endpoint(5_000, seed=12, error_fraction=0.01)
    c = per_endpoint(5_000, seed=13, error_fraction=0.06)
    v = compare(b, c).verdict
    assert v.failed and set(v.tests.filter(pl.col("decision") == "regressed")["test"]) == {"error rate"}


# --- several runs per side, folders ---------------------------------------------------------------


def test_runs_as_replicates() -> None:
    def runs(seed: int, slow: float) -> list[pl.DataFrame]:
        out = []
        for k in range(4):
            ev = per_endpoint(3_000, seed=seed + k, slowdown={SLOW: slow})
            out.append(with_process(ev, process="run_effect", seed=seed + k))
        return out

    c = compare(runs(20, 1.0), runs(30, 1.6))
    assert c.runs == (4, 4)
    t = c.table()
    assert set(t["runs_base"]) == {4} and set(t["runs_cand"]) == {4}
    assert c.verdict.failed
    assert t.filter(pl.col("verdict") == "failed")["endpoint"].cast(str).to_list() == [SLOW]
    assert not any("one run per side" in w for w in c.warnings)
    same = compare(runs(40, 1.0), runs(50, 1.0))
    assert not same.verdict.failed
    # One run against several: the replicated side's run variance serves both.
    mixed = compare(runs(20, 1.0)[:1], runs(30, 1.6))
    assert mixed.runs == (1, 4) and mixed.table()["p95_rel_ci_low"].null_count() == 0


def test_folders_runs_and_lists_alike() -> None:
    by_path = compare(str(SAMPLES / "baseline"), SAMPLES / "candidate")
    by_run = compare(tfp.load_run(SAMPLES / "baseline"), tfp.load_run(SAMPLES / "candidate"))
    assert by_path.table().equals(by_run.table())
    table = by_path.table()
    assert "POST /auth/signup" not in table["endpoint"].cast(str).to_list()  # load rows only
    assert any("target version" in w for w in by_path.warnings)
    with pytest.raises(TypeError, match="run folder"):
        compare(42, by_run)


def test_sample_runs_several_per_side_show_the_candidate_regression() -> None:
    base = [SAMPLES / n for n in ("baseline", "baseline-2", "baseline-3")]
    cand = [SAMPLES / n for n in ("candidate", "candidate-2", "candidate-3")]
    c = tfp.compare(base, cand)
    assert c.runs == (3, 3) and c.verdict.failed and not c.passed
    failed = c.table().filter(pl.col("verdict") == "failed")["endpoint"].cast(str).to_list()
    assert sorted(failed) == [  # the candidate profile slows POST /tasks only
        "POST /tasks compress-video",
        "POST /tasks generate-pdf",
        "POST /tasks resize-image",
    ]


def test_argument_errors(base: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="metrics"):
        compare(base, base, metrics=("p42",))
    with pytest.raises(ValueError, match="gate_metric"):
        compare(base, base, gate_metric="p42")
    with pytest.raises(ValueError, match="alpha"):
        compare(base, base, alpha=0.7)


def test_warnings_on_mismatched_meta(base: pl.DataFrame) -> None:
    c = compare(
        base,
        base,
        baseline_meta={"plan": "dev", "mix": "taskforge", "duration_s": 60, "target_version": "1.0"},
        candidate_meta={"plan": "prod", "mix": "taskforge", "duration_s": 90, "target_version": "1.1"},
    )
    text = " | ".join(c.warnings)
    assert "plans" in text and "target versions" in text and "20%" in text
    assert "mixes" not in text


def test_missing_groups_are_inconclusive(base: pl.DataFrame) -> None:
    cand = base.filter(pl.col("endpoint") != "GET /metrics")
    c = compare(base, cand)
    t = c.table()
    assert t.filter(pl.col("endpoint") == "GET /metrics")["verdict"].item() == "only in baseline"
    assert c.verdict.status == "inconclusive" and any("GET /metrics" in w for w in c.warnings)


def test_comparison_charts(regressed: Comparison) -> None:
    spec = regressed.chart().to_dict()
    assert data_rows(spec) <= 5_000 and "inverse_tail" in encodings(spec)["x"]
    spec = regressed.delta_chart().to_dict()
    enc = encodings(spec)
    assert data_rows(spec) <= 5_000
    assert {"rel", "lo"} <= enc["x"] and "group" in enc["y"]


def test_compare_series(base: pl.DataFrame) -> None:
    runs = {
        "v1": base,
        "v2": synthetic_events(50_000, seed=2),
        "v3": synthetic_events(50_000, seed=3, slowdown={SLOW: 1.3}),
    }
    tr = compare_series(runs)
    f = tr.frame
    assert f.height == 3 * 5 * 3
    assert f.columns[:3] == ["run", "run_index", "endpoint"]
    slow = f.filter((pl.col("endpoint") == SLOW) & (pl.col("metric") == "p95"))
    assert slow["rel_to_first"].to_list()[-1] == pytest.approx(0.3, abs=0.05)
    assert all(math.isfinite(x) for x in f["value_ms"])
    spec = tr.chart().to_dict()
    assert data_rows(spec) <= 5_000
    assert compare_series([base, base], by=None).frame["run"].unique(maintain_order=True).to_list() == [
        "run0",
        "run1",
    ]


# --- interleaved runs against two reference targets, and the calibration script -------------------


@pytest.mark.timeout(180)
async def test_compare_interleaved_against_two_reference_targets() -> None:
    knobs = {"latency": "POST /tasks=20ms,GET /health=2ms", "hash_iterations": 1000, "seed": 3}
    plan = tfp.StressPlan([tfp.Phase("load", 1.5, rate=60)])
    async with (
        tfp.ReferenceTarget(profile="baseline", **knobs) as a,
        tfp.ReferenceTarget(profile="candidate", **knobs) as b,
    ):

        def factory(target: tfp.ReferenceTarget) -> Any:
            return lambda: tfp.LoadTester(target, tfp.UserPool(3, email_prefix="ilv"), live=False)

        base, cand = await tfp.run_interleaved(factory(a), factory(b), plan, runs=2)
        cmp = tfp.compare(base, cand)
    order = [r.meta["interleave"]["order"] for r in base] + [r.meta["interleave"]["order"] for r in cand]
    assert [
        r.meta["interleave"]["side"] for r in sorted(base + cand, key=lambda r: r.meta["interleave"]["order"])
    ] == [
        "baseline",
        "candidate",
        "baseline",
        "candidate",
    ]
    assert sorted(order) == [0, 1, 2, 3] and [r.name for r in base] == ["baseline-1", "baseline-2"]
    assert cmp.runs == (2, 2) and cmp.verdict.status in ("passed", "failed", "inconclusive")
    tasks = cmp.table().filter(pl.col("endpoint").cast(str).str.starts_with("POST /tasks"))
    # The candidate profile adds 30% + 6 ms to a fixed 20 ms: every run's median shows it.
    assert tasks.height > 0 and (tasks["p50_rel"] > 0.2).all()


def test_calibration_script_smoke(tmp_path: Path) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_calibration.py"
    spec = importlib.util.spec_from_file_location("compare_calibration", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for process, runs, slow, n in (("autocorrelated", 1, 1.0, 300), ("run_effect", 3, 1.3, 200)):
        r = mod.cell(n, process, runs, slow, reps=3)
        assert set(r) >= {"failed", "passed", "inconclusive", "coverage", "insufficient"}
        assert r["failed"] + r["passed"] + r["inconclusive"] == pytest.approx(1.0)


async def test_run_interleaved_checks_runs() -> None:
    def never() -> Any:
        raise AssertionError("no tester is built for a bad argument")

    with pytest.raises(ValueError, match="runs"):
        await tfp.run_interleaved(never, never, tfp.StressPlan([tfp.Phase("p", 1, rate=1)]), runs=0)
