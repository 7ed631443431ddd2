"""compare(): finds an injected regression, stays quiet on noise, warns on mismatched runs."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest

from taskforge_perf.compare import Comparison, compare, compare_series
from taskforge_perf.synthetic import synthetic_events

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


@pytest.fixture(scope="module")
def base() -> pl.DataFrame:
    return synthetic_events(200_000, seed=1)


@pytest.fixture(scope="module")
def regressed(base: pl.DataFrame) -> Comparison:
    return compare(base, synthetic_events(200_000, seed=2, slowdown={SLOW: 1.3}))


@pytest.fixture(scope="module")
def same_build(base: pl.DataFrame) -> Comparison:
    return compare(base, synthetic_events(200_000, seed=3))


def test_finds_injected_regression_on_one_endpoint_only(regressed: Comparison) -> None:
    t = regressed.table()
    assert t.filter(pl.col("verdict") == "regressed")["endpoint"].cast(str).to_list() == [SLOW]
    row = t.filter(pl.col("endpoint") == SLOW).row(0, named=True)
    assert row["p95_rel"] == pytest.approx(0.30, abs=0.03)
    assert row["p95_ci_low_ms"] > 0 and row["p95_rel_ci_low"] < 0.30 < row["p95_rel_ci_high"]
    assert row["p95_verdict"] == "regressed"
    assert not regressed.passed
    v = regressed.verdict(max_p95_regression=0.10)
    assert v.startswith("FAIL") and SLOW in v
    # a 30% slowdown passes a 50% gate
    assert regressed.verdict(max_p95_regression=0.5).startswith("PASS")


def test_no_significant_change_between_seeds_of_one_build(same_build: Comparison) -> None:
    t = same_build.table()
    assert set(t["verdict"]) == {"no significant change"}
    assert same_build.passed and same_build.verdict().startswith("PASS")
    assert same_build.warnings == ()


def test_improvement_is_reported() -> None:
    b = synthetic_events(100_000, seed=4, slowdown={"GET /health": 1.5})
    c = compare(b, synthetic_events(100_000, seed=5))
    t = c.table()
    assert t.filter(pl.col("verdict") == "improved")["endpoint"].cast(str).to_list() == ["GET /health"]
    assert c.passed


def test_table_values_match_reference(base: pl.DataFrame) -> None:
    cand = synthetic_events(30_000, seed=9)
    t = compare(base.head(40_000), cand, by=None).table()
    lat_b = ((base.head(40_000)["t_end"] - base.head(40_000)["t_start"]) / 1e6).to_list()
    lat_c = ((cand["t_end"] - cand["t_start"]) / 1e6).to_list()
    row = t.row(0, named=True)
    for m, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert row[f"{m}_base_ms"] == pytest.approx(ref_quantile(lat_b, q), rel=1e-9)
        assert row[f"{m}_cand_ms"] == pytest.approx(ref_quantile(lat_c, q), rel=1e-9)
        assert row[f"{m}_ci_low_ms"] < row[f"{m}_delta_ms"] < row[f"{m}_ci_high_ms"]
    assert row["n_base"] == 40_000 and row["n_cand"] == 30_000


def test_interval_covers_zero_for_identical_runs(base: pl.DataFrame) -> None:
    t = compare(base, base).table()
    for m in ("p50", "p95", "p99"):
        assert (t[f"{m}_delta_ms"] == 0).all()
        assert (t[f"{m}_ci_low_ms"] < 0).all() and (t[f"{m}_ci_high_ms"] > 0).all()


def test_warnings_on_mismatched_meta(base: pl.DataFrame) -> None:
    c = compare(
        base,
        base,
        baseline_meta={
            "plan": "dev",
            "mix": "taskforge",
            "duration_s": 60,
            "target_version": "1.0",
        },
        candidate_meta={
            "plan": "prod",
            "mix": "taskforge",
            "duration_s": 90,
            "target_version": "1.1",
        },
    )
    text = " | ".join(c.warnings)
    assert "plans" in text and "target versions" in text and "20%" in text
    assert "mixes" not in text


def test_warnings_on_small_and_missing_groups(base: pl.DataFrame) -> None:
    cand = base.filter(pl.col("endpoint") != "GET /metrics").head(5_000)
    c = compare(base, cand)
    t = c.table()
    assert t.filter(pl.col("endpoint") == "GET /metrics")["verdict"].item() == "only in baseline"
    assert any("GET /metrics" in w for w in c.warnings)
    with pytest.raises(ValueError, match="metrics"):
        compare(base, base, metrics=("p42",))


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


def test_compare_finds_the_candidate_regression_in_the_sample_runs() -> None:
    """The shipped sample pair (reference target, candidate profile) through the public API."""
    from pathlib import Path

    import taskforge_perf as tfp

    root = Path(__file__).resolve().parents[1] / "data" / "samples"
    base, cand = tfp.load_run(root / "baseline"), tfp.load_run(root / "candidate")
    cmp = tfp.compare(base, cand)
    table = cmp.table()
    assert "POST /auth/signup" not in table["endpoint"].cast(str).to_list()  # load rows only
    regressed = table.filter(table["p95_verdict"] == "regressed")["endpoint"].cast(str).to_list()
    assert regressed and all(e.startswith("POST /tasks") for e in regressed)
    assert not cmp.passed
    assert any("target version" in w for w in cmp.warnings)
