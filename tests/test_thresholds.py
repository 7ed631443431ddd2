"""Thresholds: builders, parsing, evaluation over synthetic frames, and the abort watch."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import pytest

from taskforge_perf.plan import Phase, StressPlan
from taskforge_perf.schema import HTTP_SCHEMA, WS_SCHEMA, empty_http_frame
from taskforge_perf.threshold_eval import ThresholdWatch, evaluate, passed
from taskforge_perf.thresholds import (
    Threshold,
    ThresholdError,
    error_rate,
    latency,
    p95,
    p99,
    response_time,
    rps,
    task_latency,
    ws,
)

pytestmark = pytest.mark.timeout(10)
MS = 1_000_000


def http(
    latencies_ms: Sequence[float],
    *,
    endpoint: str = "POST /tasks",
    phase: str = "peak",
    errors: Sequence[str | None] | None = None,
    start_ms: float = 0.0,
    lateness_ms: float = 0.0,
    spacing_ms: float = 10.0,
) -> pl.DataFrame:
    """One row per latency; request i starts at start + i * spacing."""
    n = len(latencies_ms)
    starts = [int((start_ms + i * spacing_ms) * MS) for i in range(n)]
    errs = list(errors) if errors is not None else [None] * n
    return pl.DataFrame(
        {
            "t_intended": [s - int(lateness_ms * MS) for s in starts],
            "t_start": starts,
            "t_end": [s + int(lat * MS) for s, lat in zip(starts, latencies_ms, strict=True)],
            "status": [0 if e in ("timeout", "refused") else 500 if e else 202 for e in errs],
            "error": errs,
            "bytes_in": [10] * n,
            "bytes_out": [10] * n,
            "endpoint": [endpoint] * n,
            "method": [endpoint.split()[0]] * n,
            "user": ["loadtest0@example.com"] * n,
            "phase": [phase] * n,
            "worker": [0] * n,
            "task_id": [None] * n,
            "group": [None] * n,
            "session": [None] * n,
        },
        schema=HTTP_SCHEMA,
    )


def ws_rows(rows: Sequence[dict[str, object]]) -> pl.DataFrame:
    full = [{k: r.get(k) for k in WS_SCHEMA} for r in rows]
    return pl.DataFrame(full, schema=WS_SCHEMA)


# latencies 1..100 ms: linear p95 = 95.05, p50 = 50.5, max = 100
EVENTS = pl.concat(
    [
        http([float(i) for i in range(1, 101)], endpoint="POST /tasks", phase="peak"),
        http([5.0] * 10, endpoint="GET /health", phase="warmup", errors=["http_5xx"] * 2 + [None] * 8),
        http([900.0] * 3, endpoint="POST /auth/login", phase="setup"),
    ]
)


# -- builders and parsing -------------------------------------------------------------------
def test_builders_make_thresholds() -> None:
    assert (p95("POST /tasks") < 300) == Threshold("p95", "<", 300, endpoint="POST /tasks")
    assert (error_rate() < 0.01) == Threshold("error_rate", "<", 0.01)
    assert (task_latency("p99") < 5000) == Threshold("task_latency.p99", "<", 5000)
    assert (ws("dropped") == 0) == Threshold("ws.dropped", "==", 0)
    assert (rps(phase="peak") >= 100) == Threshold("rps", ">=", 100, phase="peak")
    assert (response_time("max") <= 2000).metric == "resp_max"
    assert (latency("p99.9", "GET /health") > 1).metric == "p99.9"
    assert (p99(abort_on_fail=True) < 1).abort_on_fail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p95(POST /tasks) < 300ms", Threshold("p95", "<", 300, endpoint="POST /tasks")),
        ("p95(POST /tasks) < 0.3 s", Threshold("p95", "<", 300, endpoint="POST /tasks")),
        ("error_rate < 1%", Threshold("error_rate", "<", 0.01)),
        ("error_rate <= 0.05", Threshold("error_rate", "<=", 0.05)),
        ("task_latency.p99 < 5s", Threshold("task_latency.p99", "<", 5000)),
        (
            "task_latency.p50(generate-pdf, phase=peak) < 2500",
            Threshold("task_latency.p50", "<", 2500, endpoint="generate-pdf", phase="peak"),
        ),
        ("ws.dropped == 0", Threshold("ws.dropped", "==", 0)),
        ("rps(phase=spike) >= 150/s", Threshold("rps", ">=", 150, phase="spike")),
        ("latency.max < 1e3", Threshold("max", "<", 1000)),
        (
            "resp_p99.9(GET /health) < 500us",
            Threshold("resp_p99.9", "<", 0.5, endpoint="GET /health"),
        ),
    ],
)
def test_parse(text: str, expected: Threshold) -> None:
    th = Threshold.parse(text)
    assert th == expected
    assert Threshold.parse(str(th)) == th  # str() is parseable


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("p95 << 300", ["cannot parse", "e.g."]),
        ("p42 < 300", ["metric 'p42' is unknown", "p95"]),
        ("error_rate < 5ms", ["unit 'ms' does not apply to error_rate", "1%"]),
        ("p95 < 3%", ["unit '%' does not apply to p95", "ms"]),
        ("ws.dropped == 1s", ["does not apply to ws.dropped"]),
        ("error_rate < 150%", ["error_rate", "fraction 0..1"]),
        ("ws.dropped(GET /x) == 0", ["endpoint= does not apply"]),
        ("p95(a, b) < 1", ["cannot read scope 'b'"]),
    ],
)
def test_parse_errors_name_the_field_and_fix(text: str, pieces: list[str]) -> None:
    with pytest.raises(ThresholdError) as info:
        Threshold.parse(text)
    for piece in pieces:
        assert piece in str(info.value)


def test_constructor_validation() -> None:
    with pytest.raises(ThresholdError, match="op '!=' is unknown"):
        Threshold("p95", "!=", 1)
    with pytest.raises(ThresholdError, match="value must be a finite number"):
        Threshold("p95", "<", float("nan"))
    with pytest.raises(ThresholdError, match="phase must be a non-empty string"):
        Threshold("p95", "<", 1, phase="")
    with pytest.raises(ThresholdError, match="stat 'p12' is unknown"):
        latency("p12")
    with pytest.raises(ThresholdError, match="count 'gone' is unknown"):
        ws("gone")


# -- evaluation -------------------------------------------------------------------------------
def test_latency_quantiles_are_exact_linear() -> None:
    res = evaluate(
        [
            p95("POST /tasks") < 96,
            p95("POST /tasks") < 95,
            Threshold.parse("p50(POST /tasks) == 50.5ms"),
            Threshold.parse("max(POST /tasks) <= 100ms"),
            Threshold.parse("mean(POST /tasks) == 50.5"),
        ],
        EVENTS,
    )
    assert res["actual"].to_list()[:2] == [pytest.approx(95.05)] * 2
    assert res["passed"].to_list() == [True, False, True, True, True]
    assert res.columns[:8] == [
        "threshold",
        "metric",
        "scope",
        "actual",
        "op",
        "limit",
        "unit",
        "passed",
    ]
    assert res["scope"][0] == "endpoint POST /tasks"
    assert not passed(res)
    assert passed(res.head(1))


def test_run_scope_leaves_out_setup_and_cancelled_rows() -> None:
    cancelled = http([10_000.0], phase="peak", errors=["cancelled"])
    res = evaluate(["max < 200ms", "max(phase=setup) >= 900ms"], pl.concat([EVENTS, cancelled]))
    assert res["actual"].to_list() == [100.0, 900.0]
    assert passed(res)


def test_error_rate_and_rps() -> None:
    res = evaluate(
        [
            "error_rate < 1%",
            "error_rate(GET /health) == 20%",
            "error_rate(phase=peak) == 0",
            "rps >= 100",
            "rps(phase=warmup) == 11",
        ],
        EVENTS,
        duration_s=1.0,
        plan=StressPlan([Phase("warmup", 10, rate=1), Phase("peak", 1, rate=100)]),
    )
    # rps(phase=...) is by_phase's achieved throughput: every answered response completed in the
    # phase's planned window (warmup: [0, 10 s), where all 110 load rows of EVENTS end) / 10 s
    assert res["actual"].to_list() == [pytest.approx(2 / 110), pytest.approx(0.2), 0.0, 110.0, 11.0]
    assert res["passed"].to_list() == [False, True, True, True, True]


def test_response_time_includes_lateness() -> None:
    late = http([10.0] * 20, lateness_ms=250)
    res = evaluate(["max < 20ms", "resp_max < 20ms"], late)
    assert res["actual"].to_list() == [10.0, 260.0]
    assert res["passed"].to_list() == [True, False]


def test_empty_scope_fails_with_a_note() -> None:
    res = evaluate(
        ["p95(GET /nope) < 10", "error_rate(phase=spike) < 1%", "ws.dropped == 0", "p95 < 10"],
        empty_http_frame().vstack(EVENTS.head(0)),
    )
    assert res["actual"].to_list() == [None] * 4
    assert res["passed"].to_list() == [False] * 4
    assert res["note"].to_list() == [
        "no requests in scope",
        "no requests in scope",
        "no WebSocket frame given",
        "no requests in scope",
    ]


def test_task_latency_and_ws_counts() -> None:
    ev = http([3.0, 3.0, 3.0], phase="peak").with_columns(task_id=pl.Series(["t1", "t2", "t3"]))
    wsf = ws_rows(
        [
            {"t": 1, "kind": "connect", "phase": "peak", "handshake_ns": 2 * MS},
            {
                "t": 2,
                "kind": "message",
                "task_id": "t1",
                "task_type": "generate-pdf",
                "status": "processing",
                "since_created_ns": 100 * MS,
                "phase": "peak",
            },
            {
                "t": 3,
                "kind": "message",
                "task_id": "t1",
                "task_type": "generate-pdf",
                "status": "completed",
                "since_created_ns": 1000 * MS,
                "phase": "peak",
            },
            {
                "t": 4,
                "kind": "message",
                "task_id": "t1",
                "task_type": "generate-pdf",
                "status": "completed",
                "since_created_ns": 9000 * MS,
                "phase": "peak",
            },  # repeat: ignored
            {
                "t": 5,
                "kind": "message",
                "task_id": "t2",
                "task_type": "resize-image",
                "status": "completed",
                "since_created_ns": 3000 * MS,
                "phase": "cooldown",
            },
            {"t": 6, "kind": "close", "code": 1006, "error": "dropped", "phase": "peak"},
            {"t": 7, "kind": "connect_error", "error": "refused", "phase": "peak"},
            {
                "t": 8,
                "kind": "error",
                "error": "lost_subscription",
                "task_id": "t3",
                "phase": "peak",
            },
        ]
    )
    res = evaluate(
        [
            "task_latency.max < 5s",
            "task_latency.p50 == 2s",
            "task_latency.max(generate-pdf) == 1s",
            "task_latency.max(phase=peak) == 3s",  # t2 was created in peak
            "ws.dropped == 0",
            "ws.failed == 1",
            "ws.lost <= 1",
            "ws.dropped(phase=warmup) == 0",
        ],
        ev,
        wsf,
    )
    assert res["actual"].to_list() == [3000.0, 2000.0, 1000.0, 3000.0, 1.0, 1.0, 1.0, 0.0]
    assert res["passed"].to_list() == [True, True, True, True, False, True, True, True]


# -- ThresholdWatch -----------------------------------------------------------------------------
def test_watch_returns_first_breached_abort_threshold_and_sticks() -> None:
    watch = ThresholdWatch(
        [
            "p95 < 1ms",  # not abort_on_fail: ignored
            Threshold.parse("error_rate < 10%", abort_on_fail=True),
            ws("dropped", abort_on_fail=True) == 0,
        ],
        min_rows=5,
    )
    assert len(watch.thresholds) == 2
    good = http([5.0] * 10)
    assert watch.check(good) is None
    few_bad = http([5.0] * 2, errors=["http_5xx"] * 2)
    assert watch.check(few_bad) is None  # under min_rows: not judged yet
    bad = pl.concat([good, http([5.0] * 5, errors=["timeout"] * 5)])
    breached = watch.check(bad)
    assert breached is not None and breached.metric == "error_rate"
    assert watch.breach is not None and watch.breach["actual"] == pytest.approx(1 / 3)
    assert watch.check(good) is breached  # sticky


def test_watch_ws_breach_and_rps_with_elapsed() -> None:
    watch = ThresholdWatch([rps(abort_on_fail=True) >= 50])
    ev = http([1.0] * 100, spacing_ms=10)  # 100 requests in ~1 s
    assert watch.check(ev, elapsed_s=1.0) is None
    assert watch.check(ev, elapsed_s=4.0) is not None
    dropped = ws_rows([{"t": 1, "kind": "close", "error": "dropped", "phase": "peak"}])
    w2 = ThresholdWatch([Threshold("ws.dropped", "==", 0, abort_on_fail=True)])
    assert w2.check(empty_http_frame(), None) is None
    assert w2.check(empty_http_frame(), dropped) == Threshold("ws.dropped", "==", 0, abort_on_fail=True)


# -- one row set with summary() (issues 11 and 13) ----------------------------------------------
def test_thresholds_judge_the_figures_summary_shows() -> None:
    from taskforge_perf import analysis
    from taskforge_perf.synthetic import synthetic_events

    ev = synthetic_events(5_000, seed=4, error_fraction=0.05, dropped_fraction=0.3, cancelled_fraction=0.05)
    setup = http([900.0] * 20, endpoint="POST /tasks resize-image", phase="setup", errors=["http_4xx"] * 20)
    ev = pl.concat([ev, setup.with_columns(pl.col(c).cast(ev.schema[c]) for c in ev.columns)])
    load = ev.filter(~pl.col("phase").cast(pl.String).is_in(["setup", "teardown"]))
    s = analysis.summary(load, duration_s=60.0)
    for row in s.iter_rows(named=True):
        ep = str(row["endpoint"])
        res = evaluate(
            [p95(ep) < 1e9, p99(ep) < 1e9, Threshold("max", "<", 1e9, endpoint=ep),
             error_rate(ep) < 0.5, rps(ep) > 0, Threshold("resp_p50", "<", 1e9, endpoint=ep)],
            ev,
            duration_s=60.0,
        )  # fmt: skip
        got = res["actual"].to_list()
        want = [
            row["p95_ms"],
            row["p99_ms"],
            row["max_ms"],
            row["error_rate"],
            row["rps"],
            row["resp_p50_ms"],
        ]
        assert got == [pytest.approx(w, rel=1e-12) for w in want], ep
        assert res["rows"].to_list()[:2] == [row["answered"]] * 2
        assert res["rows"][3] == row["count"] - row["not_sent"]
    o = analysis.overall(load)
    assert evaluate(["p95 < 1s"], ev)["actual"].item() == pytest.approx(o["p95_ms"].item(), rel=1e-12)


def test_a_scope_with_nothing_answered_is_not_judged_on_dropped_rows() -> None:
    dropped = http([0.0] * 10, errors=["dropped"] * 10)
    res = evaluate(["p95 < 10ms", "max < 10ms", "error_rate < 1%"], dropped)
    assert res["actual"].to_list() == [None, None, None]
    assert res["passed"].to_list() == [False, False, False]
    assert res["note"].to_list() == [
        "no answered requests in scope",
        "no answered requests in scope",
        "no request in scope was sent (all tester-side)",
    ]
