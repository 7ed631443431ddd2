"""Analysis functions against reference computations on synthetic frames."""

from __future__ import annotations

import math

import polars as pl
import pytest

from taskforge_perf import analysis as A
from taskforge_perf.schema import HTTP_SCHEMA, WS_SCHEMA, empty_http_frame
from taskforge_perf.synthetic import synthetic_events, synthetic_ws_events

pytestmark = pytest.mark.timeout(60)


def ref_quantile(values: list[float], q: float) -> float:
    """numpy.quantile(values, q) with the default (linear) interpolation, by sorted-list math."""
    xs = sorted(values)
    h = (len(xs) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return synthetic_events(20_000, seed=7, users=8, error_fraction=0.05)


def test_synthetic_frames_have_exact_schemas() -> None:
    assert dict(synthetic_events(100, seed=1).schema) == HTTP_SCHEMA
    assert dict(synthetic_ws_events(20, seed=1).schema) == WS_SCHEMA
    assert synthetic_events(1000, seed=5).equals(synthetic_events(1000, seed=5))
    assert not synthetic_events(1000, seed=5).equals(synthetic_events(1000, seed=6))


def test_summary_percentiles_match_reference(events: pl.DataFrame) -> None:
    s = A.summary(events)
    assert s["endpoint"].cast(str).to_list() == sorted(events["endpoint"].unique().cast(str))
    for row in s.iter_rows(named=True):
        sub = events.filter(pl.col("endpoint") == row["endpoint"])
        lat = ((sub["t_end"] - sub["t_start"]) / 1e6).to_list()
        resp = ((sub["t_end"] - sub["t_intended"]) / 1e6).to_list()
        assert row["count"] == sub.height
        assert row["errors"] == sub["error"].is_not_null().sum()
        assert row["error_rate"] == pytest.approx(row["errors"] / sub.height)
        for name, q in A.PERCENTILES:
            assert row[f"{name}_ms"] == pytest.approx(ref_quantile(lat, q), rel=1e-9)
            assert row[f"resp_{name}_ms"] == pytest.approx(ref_quantile(resp, q), rel=1e-9)
        assert row["max_ms"] == pytest.approx(max(lat))
        assert row["mean_ms"] == pytest.approx(sum(lat) / len(lat))
        assert row["resp_p99_ms"] >= row["p99_ms"] - 1e-9 or row["resp_p50_ms"] >= row["p50_ms"]


def test_summary_rps_uses_whole_frame_span(events: pl.DataFrame) -> None:
    span = (events["t_end"].max() - events["t_start"].min()) / 1e9  # type: ignore[operator]
    s = A.summary(events)
    assert s["rps"].sum() == pytest.approx(events.height / span)
    assert A.summary(events, duration_s=10.0)["rps"].sum() == pytest.approx(events.height / 10)
    o = A.overall(events)
    assert o.height == 1 and o["count"].item() == events.height
    assert o["rps"].item() == pytest.approx(events.height / span)
    with pytest.raises(ValueError, match="duration_s"):
        A.summary(events, duration_s=0)


def test_lazy_input_and_groupings(events: pl.DataFrame) -> None:
    assert A.summary(events.lazy()).equals(A.summary(events))
    u = A.by_user(events)
    assert u.height == 8 and u["count"].sum() == events.height
    ue = A.by_user_endpoint(events)
    assert ue.columns[:2] == ["user", "endpoint"] and ue["count"].sum() == events.height
    ph = A.by_phase(events)
    assert ph["phase"].cast(str).to_list() == ["warmup", "peak", "cooldown"]
    spans = A.phase_spans(events)
    assert spans["name"].cast(str).to_list() == ["warmup", "peak", "cooldown"]
    # per-phase rate uses the phase's own span: peak runs at 4x the cooldown's rate
    rps = dict(zip(ph["phase"].cast(str), ph["rps"], strict=True))
    assert rps["peak"] / rps["cooldown"] == pytest.approx(4.0, rel=0.05)


def test_empty_frames() -> None:
    empty = empty_http_frame()
    assert A.summary(empty).is_empty()
    assert A.overall(empty).is_empty()
    assert A.timeline(empty).is_empty()
    assert A.percentile_spectrum(empty).is_empty()
    with pytest.raises(TypeError, match="DataFrame"):
        A.summary([1, 2, 3])  # type: ignore[arg-type]


def test_timeline_windows(events: pl.DataFrame) -> None:
    tl = A.timeline(events, window_s=5.0, by=None)
    assert tl["t_s"].to_list() == [5.0 * k for k in range(tl.height)]
    assert tl["count"].sum() == events.height
    first = events.filter(pl.col("t_start") < 5_000_000_000)
    assert tl["count"][0] == first.height
    assert tl["rps"][0] == pytest.approx(first.height / 5.0)
    lat = ((first["t_end"] - first["t_start"]) / 1e6).to_list()
    assert tl["p95_ms"][0] == pytest.approx(ref_quantile(lat, 0.95), rel=1e-9)
    per_ep = A.timeline(events, window_s=10.0)
    assert per_ep["count"].sum() == events.height
    assert per_ep.group_by("endpoint").len()["len"].n_unique() == 1  # same windows per endpoint


def test_timeline_fills_empty_windows() -> None:
    ev = synthetic_events(100, seed=1).filter((pl.col("t_start") < 5e9) | (pl.col("t_start") > 30e9))
    tl = A.timeline(ev, window_s=1.0, by=None)
    assert tl["t_s"].diff().drop_nulls().unique().to_list() == [1.0]
    gap = tl.filter((pl.col("t_s") > 6) & (pl.col("t_s") < 29))
    assert gap.height > 0 and gap["count"].sum() == 0 and gap["p50_ms"].null_count() == gap.height


def test_percentile_spectrum(events: pl.DataFrame) -> None:
    sp = A.percentile_spectrum(events)
    assert sp.height == len(A.SPECTRUM_LEVELS)
    assert sp["percentile"][0] == 0.0 and sp["percentile"][-1] == pytest.approx(99.999)
    assert sp["inverse_tail"][-1] == pytest.approx(1e5)
    assert sp["latency_ms"].is_sorted() and sp["response_ms"].is_sorted()
    lat = ((events["t_end"] - events["t_start"]) / 1e6).to_list()
    for p, v in zip(sp["percentile"], sp["latency_ms"], strict=True):
        assert v == pytest.approx(ref_quantile(lat, p / 100), rel=1e-9)
    o = A.overall(events)
    p99 = sp.filter((pl.col("percentile") - 99).abs() < 1e-9)["latency_ms"].item()
    assert p99 == pytest.approx(o["p99_ms"].item(), rel=1e-12)
    grouped = A.percentile_spectrum(events, by="endpoint")
    assert grouped.height == 5 * len(A.SPECTRUM_LEVELS)
    for _, g in grouped.group_by("endpoint"):
        assert g["latency_ms"].is_sorted()


def test_errors_and_slowest_users() -> None:
    ev = synthetic_events(
        20_000,
        seed=3,
        users=6,
        error_fraction=0.1,
        user_slowdown={"loadtest4@example.com": 2.0},
    )
    err = A.errors(ev)
    assert err["count"].sum() == ev["error"].is_not_null().sum()
    assert err["count"].is_sorted(descending=True)
    assert err["share"].sum() == pytest.approx(1.0)
    assert set(err["error"].cast(str)) == {"http_5xx", "timeout", "http_4xx", "reset"}
    top = A.slowest_users(ev, n=3)
    assert top.height == 3 and top["rank"].to_list() == [1, 2, 3]
    assert top["user"][0] == "loadtest4@example.com"
    assert top["p95_ms"].is_sorted(descending=True)
    assert A.slowest_users(ev, n=100)["share"].sum() == pytest.approx(1.0)


def hand_ws() -> pl.DataFrame:
    """A small WebSocket run whose figures are worked out by hand in the tests."""
    s = 1_000_000_000
    rows = [
        # t, kind, conn, task_id, task_type, status, since_created_ns, error
        (0, "connect", 0, None, None, None, None, None),
        (0, "connect", 1, None, None, None, None, None),
        (1 * s, "connect_error", 2, None, None, None, None, None),
        (1 * s, "subscribe", 0, "a", "generate-pdf", None, None, None),
        (1 * s, "subscribe", 0, "b", "generate-pdf", None, None, None),
        (1 * s, "subscribe", 1, "c", "resize-image", None, None, None),
        (2 * s, "message", 0, "a", "generate-pdf", "processing", 100_000_000, None),
        (2 * s + 1, "message", 1, "a", "generate-pdf", "processing", 200_000_000, None),  # dup
        (3 * s, "message", 0, "a", "generate-pdf", "completed", 2_000_000_000, None),
        (3 * s, "message", 0, "b", "generate-pdf", "processing", 300_000_000, None),
        (4 * s, "message", 1, "c", "resize-image", "failed", 4_000_000_000, None),
        (5 * s, "close", 1, None, None, None, None, "dropped"),
        (5 * s, "reconnect", 1, None, None, None, None, None),
        (6 * s, "resubscribe", 0, "b", None, None, None, None),
        (6 * s + 1, "error", 0, "b", None, None, None, "lost_subscription"),  # confirmed loss
        (7 * s, "isolation", 0, "x", None, None, None, None),
        (10 * s, "message", 0, "b", "generate-pdf", "processing", 900_000_000, None),
    ]
    cols = ["t", "kind", "conn", "task_id", "task_type", "status", "since_created_ns", "error"]
    df = pl.DataFrame(rows, schema=cols, orient="row")
    return df.select(
        (pl.col(c) if c in cols else pl.lit(None)).cast(t).alias(c) for c, t in WS_SCHEMA.items()
    )


def test_task_latency_by_hand() -> None:
    tl = A.task_latency(hand_ws())
    rows = {(r["task_type"], r["status"]): r for r in tl.iter_rows(named=True)}
    pdf_proc = rows[("generate-pdf", "processing")]
    # first processing message of a (100 ms) and of b (300 ms); later duplicates ignored
    assert pdf_proc["count"] == 2
    assert pdf_proc["p50_ms"] == pytest.approx(200.0)
    assert pdf_proc["p95_ms"] == pytest.approx(100 + 0.95 * 200)
    assert rows[("generate-pdf", "completed")]["p99_ms"] == pytest.approx(2000.0)
    assert rows[("resize-image", "failed")]["count"] == 1
    # b never completed; a completed; c failed (final)
    assert pdf_proc["tasks"] == 2 and pdf_proc["unfinished_at_end"] == 1 and pdf_proc["untracked"] == 0
    assert rows[("resize-image", "failed")]["unfinished_at_end"] == 0
    # a task created over HTTP but never subscribed is untracked, not unfinished
    http = synthetic_events(0).vstack(
        pl.DataFrame({"task_id": ["z"]}).select(
            (pl.col(c) if c == "task_id" else pl.lit(None)).cast(t).alias(c) for c, t in HTTP_SCHEMA.items()
        )
    )
    with_http = A.task_latency(hand_ws(), events=http)
    unknown = with_http.filter(pl.col("task_type").is_null())
    assert unknown["tasks"].to_list() == [1] and unknown["untracked"].to_list() == [1]
    assert unknown["unfinished_at_end"].to_list() == [0]
    assert with_http.filter(pl.col("task_type") == "generate-pdf")["unfinished_at_end"][0] == 1


def test_ws_summary_by_hand() -> None:
    s = A.ws_summary(hand_ws()).row(0, named=True)
    assert s["opened"] == 2 and s["failed"] == 1 and s["dropped"] == 1 and s["reconnected"] == 1
    assert s["messages"] == 6 and s["subscriptions"] == 3 and s["resubscriptions"] == 1
    assert s["lost_subscriptions"] == 1 and s["isolation_findings"] == 1 and s["isolation_expected"] == 0
    expected = hand_ws().with_columns(
        error=pl.when(pl.col("kind") == "isolation").then(pl.lit("expected")).otherwise(pl.col("error"))
    )
    e = A.ws_summary(expected).row(0, named=True)
    assert e["isolation_findings"] == 0 and e["isolation_expected"] == 1
    assert s["duration_s"] == pytest.approx(10.0)
    assert s["messages_per_s"] == pytest.approx(0.6)
    assert A.ws_summary(hand_ws(), duration_s=60)["messages_per_s"].item() == pytest.approx(0.1)


def test_ws_connections_timeline() -> None:
    ws = synthetic_ws_events(200, connections=30, drops=3, seed=2)
    tl = A.ws_connections_timeline(ws, window_s=1.0)
    assert tl["open"].max() == 30 and tl["open"][-1] == 30  # drops reconnect
    assert tl["dropped"].sum() == 3
    assert A.ws_connections_timeline(hand_ws(), window_s=1.0)["open"].to_list()[-1] == 1
