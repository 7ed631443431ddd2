"""Every chart builds, carries the expected encodings, and embeds at most 5,000 data rows."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import altair as alt
import polars as pl
import pytest

from taskforge_perf import analysis as A
from taskforge_perf import charts as C
from taskforge_perf.synthetic import synthetic_events, synthetic_ws_events

pytestmark = pytest.mark.timeout(60)


def data_rows(spec: dict[str, Any]) -> int:
    """The largest number of rows of any dataset or inline data in a Vega-Lite spec."""
    best = max((len(v) for v in spec.get("datasets", {}).values()), default=0)
    stack: list[Any] = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and isinstance(data.get("values"), list):
                best = max(best, len(data["values"]))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return best


def encodings(spec: dict[str, Any]) -> dict[str, Any]:
    """Channel -> field of every encoding in the spec (layers included)."""
    out: dict[str, Any] = {}
    stack: list[Any] = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            enc = node.get("encoding")
            if isinstance(enc, dict):
                for ch, d in enc.items():
                    if isinstance(d, dict) and "field" in d:
                        out.setdefault(ch, set()).add(d["field"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


@pytest.fixture(scope="module")
def big() -> pl.DataFrame:
    # 1M rows over a 20-minute run, 400 users: every chart must aggregate to <= 5,000 rows
    phases = (("warmup", 120.0, 0.5), ("peak", 900.0, 1.0), ("cooldown", 180.0, 0.25))
    return synthetic_events(1_000_000, seed=11, users=1_500, phases=phases)


@pytest.fixture(scope="module")
def ws() -> pl.DataFrame:
    return synthetic_ws_events(20_000, connections=400, drops=5, duration_s=1_200, seed=4)


def check(chart: alt.TopLevelMixin, fields: dict[str, str]) -> dict[str, Any]:
    spec = chart.to_dict()
    assert data_rows(spec) <= C.MAX_ROWS
    assert data_rows(spec) > 0
    enc = encodings(spec)
    for channel, field in fields.items():
        assert field in enc.get(channel, set()), (channel, field, enc)
    title = spec.get("title") or {}
    assert title.get("text")
    return spec


def test_no_pandas_needed() -> None:
    if importlib.util.find_spec("pandas") is not None:
        pytest.skip("pandas is installed here; the check needs an environment without it")
    spec = C.throughput(synthetic_events(2_000, seed=1)).to_dict()
    assert data_rows(spec) > 0 and "pandas" not in sys.modules


def test_latency_over_time(big: pl.DataFrame) -> None:
    spec = check(
        C.latency_over_time(big),
        {"x": "t_s", "y": "ms", "color": "endpoint"},
    )
    assert "(s)" in str(spec) and "(ms)" in str(spec)
    phases = pl.DataFrame({"name": ["a", "b"], "start_s": [0.0, 600.0], "end_s": [600.0, 1200.0]})
    check(
        C.latency_over_time(big.lazy(), phases=phases, metric="p99", window_s=0.5), {"y": "ms", "x2": "end_s"}
    )
    with pytest.raises(ValueError, match="metric"):
        C.latency_over_time(big, metric="p42")


def test_percentiles(big: pl.DataFrame) -> None:
    spec = check(C.percentiles(big, by="endpoint"), {"x": "inverse_tail", "y": "ms"})
    assert '"log"' in str(spec).replace("'", '"')
    check(C.percentiles(A.percentile_spectrum(big)), {"x": "inverse_tail", "color": "series"})


def test_user_endpoint_heatmap(big: pl.DataFrame) -> None:
    spec = check(C.user_endpoint_heatmap(big), {"x": "endpoint", "y": "user", "color": "p95_ms"})
    assert data_rows(spec) <= C.MAX_ROWS  # 1,500 users x 5 endpoints were cut to the slowest


def test_throughput(big: pl.DataFrame) -> None:
    spec = check(C.throughput(big), {"x": "t_s", "y": "rate", "color": "series"})
    assert "req/s" in str(spec)


def test_ws_charts(ws: pl.DataFrame) -> None:
    check(
        C.task_latency_hist(ws), {"x": "start_s", "x2": "end_s", "y": "y0", "y2": "y1", "color": "task_type"}
    )
    check(C.ws_connections(ws, window_s=0.1), {"x": "t_s", "y": "connections", "color": "series"})


def test_fit_window_and_data_guard() -> None:
    assert C.fit_window(60, 1.0, 5) == 1.0
    assert C.fit_window(36_000, 1.0, 5) >= 36_000 * 5 / C.MAX_ROWS
    with pytest.raises(ValueError, match="aggregate"):
        C.data_values(pl.DataFrame({"x": range(C.MAX_ROWS + 1)}))
