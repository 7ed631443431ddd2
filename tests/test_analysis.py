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


ANSWERED = (None, "http_4xx", "http_5xx")
TESTER_SIDE = ("dropped", "cancelled", "auth", "client")


def answered(ev: pl.DataFrame) -> pl.DataFrame:
    """The rows the target answered, by hand (no error, or a 4xx/5xx)."""
    return ev.filter(pl.col("error").is_null() | pl.col("error").cast(str).is_in(ANSWERED[1:]))


def test_summary_percentiles_match_reference(events: pl.DataFrame) -> None:
    s = A.summary(events)
    assert s["endpoint"].cast(str).to_list() == sorted(events["endpoint"].unique().cast(str))
    for row in s.iter_rows(named=True):
        every = events.filter(pl.col("endpoint") == row["endpoint"])
        sub = answered(every)  # refused / reset / timeout rows have no latency of the target
        assert 0 < sub.height < every.height
        lat = ((sub["t_end"] - sub["t_start"]) / 1e6).to_list()
        resp = ((sub["t_end"] - sub["t_intended"]) / 1e6).to_list()
        assert row["count"] == every.height and row["answered"] == sub.height
        assert row["errors"] == every["error"].is_not_null().sum()
        assert row["error_rate"] == pytest.approx(row["errors"] / every.height)
        for name, q in A.PERCENTILES:
            assert row[f"{name}_ms"] == pytest.approx(ref_quantile(lat, q), rel=1e-9)
            assert row[f"resp_{name}_ms"] == pytest.approx(ref_quantile(resp, q), rel=1e-9)
        assert row["max_ms"] == pytest.approx(max(lat))
        assert row["mean_ms"] == pytest.approx(sum(lat) / len(lat))
        assert row["resp_p99_ms"] >= row["p99_ms"] - 1e-9 or row["resp_p50_ms"] >= row["p50_ms"]


def test_summary_rps_uses_whole_frame_span(events: pl.DataFrame) -> None:
    ans = answered(events)
    span = (ans["t_end"].max() - ans["t_start"].min()) / 1e9  # type: ignore[operator]
    s = A.summary(events)
    assert s["rps"].sum() == pytest.approx(ans.height / span)
    assert A.summary(events, duration_s=10.0)["rps"].sum() == pytest.approx(ans.height / 10)
    o = A.overall(events)
    assert o.height == 1 and o["count"].item() == events.height
    assert o["rps"].item() == pytest.approx(ans.height / span)
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
    assert tl["rps"][0] == pytest.approx(answered(first).height / 5.0)
    lat = ((answered(first)["t_end"] - answered(first)["t_start"]) / 1e6).to_list()
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
    ans = answered(events)
    assert sp["count"][0] == ans.height
    lat = ((ans["t_end"] - ans["t_start"]) / 1e6).to_list()
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


# -- outcome classes (issue 11) ---------------------------------------------------------------
def rows(spec: list[tuple[str, str, str | None, int, float]]) -> pl.DataFrame:
    """Hand-built HTTP rows: (phase, endpoint, error, status, latency_ms), one every 10 ms."""
    out = []
    for i, (phase, ep, err, status, lat) in enumerate(spec):
        t = i * 10_000_000
        out.append(
            {
                "t_intended": t,
                "t_start": t,
                "t_end": t + int(lat * 1e6),
                "status": status,
                "error": err,
                "endpoint": ep,
                "method": ep.split()[0],
                "user": "loadtest0@example.com",
                "phase": phase,
                "worker": 0,
            }
        )
    return pl.DataFrame([{k: r.get(k) for k in HTTP_SCHEMA} for r in out], schema=HTTP_SCHEMA)


@pytest.fixture(scope="module")
def stressed() -> pl.DataFrame:
    """A synthetic run with tester-side rows: 20% dropped (0 ms "latency"), 5% cancelled."""
    return synthetic_events(20_000, seed=11, users=8, error_fraction=0.05, dropped_fraction=0.2,
                            cancelled_fraction=0.05)  # fmt: skip


def test_tester_side_rows_are_out_of_percentiles_and_error_rates(stressed: pl.DataFrame) -> None:
    s = A.summary(stressed)
    everything = A.summary(stressed, include="all")
    for row, row_all in zip(s.iter_rows(named=True), everything.iter_rows(named=True), strict=True):
        every = stressed.filter(pl.col("endpoint") == row["endpoint"])
        ans = answered(every)
        not_sent = every.filter(pl.col("error").cast(str).is_in(TESTER_SIDE))
        sent = every.height - not_sent.height
        target_errors = every.filter(
            pl.col("error").is_not_null() & ~pl.col("error").cast(str).is_in(TESTER_SIDE)
        ).height
        assert not_sent.height > 0.2 * every.height  # the fixture did make tester-side rows
        assert (row["count"], row["answered"], row["not_sent"]) == (every.height, ans.height, not_sent.height)
        assert row["errors"] == target_errors
        assert row["error_rate"] == pytest.approx(target_errors / sent)
        lat = ((ans["t_end"] - ans["t_start"]) / 1e6).to_list()
        lat_all = ((every["t_end"] - every["t_start"]) / 1e6).to_list()
        assert row["p50_ms"] == pytest.approx(ref_quantile(lat, 0.5), rel=1e-9)
        assert row["p99_ms"] == pytest.approx(ref_quantile(lat, 0.99), rel=1e-9)
        assert row_all["p50_ms"] == pytest.approx(ref_quantile(lat_all, 0.5), rel=1e-9)
        assert row_all["p50_ms"] < row["p50_ms"]  # the 0 ms dropped rows pull "all" down
    o = A.overall(stressed)
    assert o["answered"].item() == answered(stressed).height
    # the same row set in every view
    u = A.by_user(stressed)
    assert u["not_sent"].sum() == s["not_sent"].sum() and u["errors"].sum() == s["errors"].sum()
    tl = A.timeline(stressed, window_s=10.0, by=None)
    assert tl["answered"].sum() == o["answered"].item() and tl["errors"].sum() == o["errors"].item()
    sp = A.percentile_spectrum(stressed)
    p50 = sp.filter((pl.col("percentile") - 50).abs() < 1e-9)["latency_ms"].item()
    assert p50 == pytest.approx(o["p50_ms"].item(), rel=1e-12)
    assert A.percentile_spectrum(stressed, include="all")["count"][0] == stressed.height
    top = A.slowest_users(stressed, n=8)
    for r in top.iter_rows(named=True):
        mine = answered(stressed.filter(pl.col("user") == r["user"]))
        lat = ((mine["t_end"] - mine["t_start"]) / 1e6).to_list()
        assert r["p95_ms"] == pytest.approx(ref_quantile(lat, 0.95), rel=1e-9)
    err = A.errors(stressed)
    assert set(err.filter(pl.col("outcome") == "tester_side")["error"].cast(str)) == {"dropped", "cancelled"}


def test_a_group_with_no_answered_rows_has_null_percentiles() -> None:
    ev = rows(
        [("load", "GET /health", None, 200, 5.0)] * 4
        + [("load", "POST /tasks", "dropped", 0, 0.0)] * 3
        + [("load", "GET /metrics", "refused", 0, 0.2)] * 2
    )
    s = {r["endpoint"]: r for r in A.summary(ev).iter_rows(named=True)}
    tasks = s["POST /tasks"]
    assert (tasks["count"], tasks["answered"], tasks["not_sent"], tasks["errors"]) == (3, 0, 3, 0)
    assert tasks["p50_ms"] is None and tasks["max_ms"] is None and tasks["resp_p99_ms"] is None
    assert tasks["error_rate"] is None and tasks["rps"] == 0  # nothing was sent
    refused = s["GET /metrics"]
    assert refused["p50_ms"] is None and refused["error_rate"] == 1.0 and refused["errors"] == 2
    assert s["GET /health"]["p50_ms"] == pytest.approx(5.0)
    assert A.summary(ev, include=["answered", "target_failure"]).filter(pl.col("endpoint") == "GET /metrics")[
        "p50_ms"
    ].item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="include must be 'answered', 'all' or a sequence of"):
        A.summary(ev, include="dropped")


def test_outcomes_headline_and_auth_outcomes() -> None:
    ev = rows(
        [("setup", "POST /auth/signup", "http_4xx", 409, 3.0)] * 2
        + [("setup", "POST /auth/login", None, 200, 3.0)] * 2
        + [("peak", "GET /health", None, 200, 1.0)] * 5
        + [("peak", "GET /health", "http_5xx", 500, 1.0)]
        + [("peak", "GET /health", "dropped", 0, 0.0)] * 3
        + [("peak", "GET /health", "cancelled", 0, 9.0)] * 2
        + [("teardown", "POST /auth/logout", "http_4xx", 401, 1.0)] * 2
    )
    o = A.outcomes(ev, by="phase").filter(pl.col("phase") == "peak").row(0, named=True)
    assert (o["count"], o["answered"], o["errors"], o["target_failures"]) == (11, 6, 1, 0)
    assert (o["not_sent"], o["dropped"], o["cancelled"], o["auth"], o["client"]) == (5, 3, 2, 0, 0)
    h = A.headline(ev)
    assert h == {
        "requests": 11,
        "answered": 6,
        "errors": {"http_5xx": 1},
        "not_sent": {"dropped": 3, "cancelled": 2},
        "auth_outcomes": {"POST /auth/logout 401": 2, "POST /auth/signup 409": 2},
    }
    assert A.headline_lines(ev) == [
        "11 requests (6 answered), 1 errors {'http_5xx': 1}",
        "not sent: 3 dropped, 2 cancelled",
        "auth outcomes (setup/teardown, not load errors): POST /auth/logout 401 x2, POST /auth/signup 409 x2",
    ]
    assert A.not_sent_text(ev.filter(pl.col("phase") == "peak")) == "not sent: 3 dropped, 2 cancelled"
    assert A.not_sent_text(ev.filter(pl.col("phase") == "setup")) == "not sent: 0"


def test_by_phase_throughput_is_answered_per_planned_window() -> None:
    from taskforge_perf.plan import Phase, StressPlan

    plan = StressPlan([Phase("a", 1.0, rate=10), Phase("b", 1.0, rate=10), Phase("c", 1.0, rate=10)])
    s = 1_000_000_000
    spec = []
    # a: 10 requests answered within a; b: 10 requests, 5 answered in b, 5 dropped; c: all dropped
    for i in range(10):
        spec.append(("a", i * s // 10, i * s // 10 + 1_000_000, None))
    for i in range(10):
        t = s + i * s // 10
        spec.append(("b", t, t + 1_000_000, None) if i < 5 else ("b", t, t, "dropped"))
    for i in range(10):
        t = 2 * s + i * s // 10
        spec.append(("c", t, t, "dropped"))
    ev = pl.DataFrame(
        [
            {"t_intended": t0 + 7 * s, "t_start": t0 + 7 * s, "t_end": t1 + 7 * s, "error": e, "phase": ph,
             "status": 0 if e else 200, "endpoint": "GET /health"}  # fmt: skip
            for ph, t0, t1, e in spec
        ]
    ).select((pl.col(c) if c in ("t_intended", "t_start", "t_end", "error", "phase", "status", "endpoint")
              else pl.lit(None)).cast(t).alias(c) for c, t in HTTP_SCHEMA.items())  # fmt: skip
    ph = A.by_phase(ev, plan=plan, plan_start_s=7.0)
    assert ph["phase"].cast(str).to_list() == ["a", "b", "c"]
    assert ph["answered_in_window"].to_list() == [10, 5, 0]
    assert ph["rps"].to_list() == [10.0, 5.0, 0.0]
    assert ph["window_s"].to_list() == [1.0, 1.0, 1.0]
    assert ph["p50_ms"][2] is None and ph["not_sent"].to_list() == [0, 5, 10]
    assert ph["error_rate"].to_list() == [0.0, 0.0, None]
    # the plan's start inferred from the rows gives the same windows
    assert A.by_phase(ev, plan=plan)["answered_in_window"].to_list() == [10, 5, 0]
    # a plan phase without any row still has its row
    plan4 = StressPlan([*plan.phases, Phase("d", 1.0, rate=10)])
    d = A.by_phase(ev, plan=plan4, plan_start_s=7.0).row(3, named=True)
    assert (d["phase"], d["count"], d["rps"], d["p95_ms"]) == ("d", 0, 0.0, None)


def test_timeline_scales_a_partial_last_window() -> None:
    ev = rows([("load", "GET /health", None, 200, 1.0)] * 250)  # 100/s for 2.5 s
    tl = A.timeline(ev, window_s=1.0, by=None)
    assert tl["count"].to_list() == [100, 100, 50]
    assert tl["rps"].to_list() == [100.0, 100.0, 50.0]  # without the span: per full window
    tl = A.timeline(ev, window_s=1.0, by=None, start_s=0.0, end_s=2.5)
    assert tl["rps"].to_list() == [100.0, 100.0, 100.0]
