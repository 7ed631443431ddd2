"""The incremental abort watch (add/poll), the recorder's ``since`` and ``generator.*`` thresholds."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest

from taskforge_perf.engine.recorder import HttpRecorder
from taskforge_perf.threshold_eval import ThresholdWatch, evaluate, rescope
from taskforge_perf.threshold_stream import BUCKET_RATIO, LatencyHistogram
from taskforge_perf.thresholds import Threshold, ThresholdError

ENDPOINTS = ("GET /health", "POST /tasks generate-pdf")
PHASES = ("setup", "warmup", "peak")


def random_rows(n: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    t = 0
    for _ in range(n):
        t += rng.randrange(1, 2_000_000)
        lat = int(rng.lognormvariate(15, 1.2))  # ~3 ms median, long tail
        late = rng.choice((0, 0, 0, rng.randrange(0, 50_000_000)))
        err = rng.choice((None,) * 18 + ("http_5xx", "cancelled"))
        rows.append(
            {
                "t_intended": t,
                "t_start": t + late,
                "t_end": t + late + lat,
                "error": err,
                "endpoint": rng.choice(ENDPOINTS),
                "phase": rng.choice(PHASES),
            }
        )
    return pl.DataFrame(rows, schema_overrides={"error": pl.String})


WATCHED = [
    Threshold.parse(text, abort_on_fail=True)
    for text in (
        "p50 < 1s",
        "p95(GET /health) < 1s",
        "resp_p99(phase=peak) < 1s",
        "p99.9 < 1s",
        "max < 10s",
        "mean(POST /tasks generate-pdf) < 1s",
        "error_rate < 50%",
        "error_rate(GET /health, phase=warmup) < 50%",
        "rps > 1",
    )
]


def test_incremental_watch_matches_the_exact_evaluation() -> None:
    ev = random_rows(20_000, seed=1)
    exact = evaluate(WATCHED, ev, duration_s=30.0)
    watch = ThresholdWatch(WATCHED)
    rng = random.Random(2)
    i = 0
    while i < ev.height:  # fed in uneven pieces, as the engine does
        k = rng.randrange(1, 3000)
        watch.add(ev.slice(i, k))
        i += k
    assert watch.poll(elapsed_s=30.0) is None
    assert watch._acc is not None
    for th, acc, want, rows in zip(
        WATCHED, watch._acc, exact["actual"].to_list(), exact["rows"].to_list(), strict=True
    ):
        got, n, _ = acc.value(30.0)
        assert n == rows, th
        if th.metric in ("error_rate", "rps", "max", "mean"):
            assert got == pytest.approx(want, rel=1e-9), th
        else:  # a percentile: within half a bucket of the order statistic it starts from
            assert got == pytest.approx(want, rel=(BUCKET_RATIO - 1) / 2 + 0.002), th


def test_incremental_watch_aborts_on_the_chunk_that_breaches() -> None:
    watch = ThresholdWatch([Threshold.parse("p95 < 100ms", abort_on_fail=True)], min_rows=10)
    fast = random_rows(1000, seed=3).with_columns(t_end=pl.col("t_start") + 5_000_000)
    watch.add(fast)
    assert watch.poll() is None
    slow = fast.with_columns(t_end=pl.col("t_start") + 400_000_000)
    watch.add(slow.head(30))
    assert watch.poll() is None  # 30 of 1030 slow: p95 still fast
    watch.add(slow.head(50))
    hit = watch.poll()  # 80 of 1080 slow: p95 is a slow one
    assert hit is not None and hit.metric == "p95"
    assert watch.breach is not None and watch.breach["actual"] == pytest.approx(400, rel=0.006)
    assert watch.poll() is hit  # sticky


def test_incremental_watch_counts_websocket_rows_as_they_come() -> None:
    watch = ThresholdWatch([Threshold.parse("ws.dropped == 0", abort_on_fail=True)])
    ws = pl.DataFrame(
        {"t": [1, 2], "kind": ["open", "close"], "error": [None, "dropped"], "phase": ["a", "a"]},
        schema_overrides={"error": pl.String},
    )
    watch.add(pl.DataFrame(), ws.head(1))
    assert watch.poll() is None
    watch.add(pl.DataFrame(), ws.tail(1))
    assert watch.poll() is not None


def test_histogram_percentiles_are_within_half_a_bucket() -> None:
    rng = random.Random(4)
    values = [rng.expovariate(1 / 20) for _ in range(50_000)] + [0.0] * 10
    h = LatencyHistogram()
    for i in range(0, len(values), 7000):
        h.add(pl.Series(values[i : i + 7000]))
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99, 0.999):
        want = ordered[int(q * (len(values) - 1))]
        assert h.quantile(q) == pytest.approx(want, rel=0.005)
    assert h.max == max(values) and h.n == len(values)
    assert h.mean() == pytest.approx(sum(values) / len(values))
    assert LatencyHistogram().quantile(0.5) is None


@pytest.mark.parametrize("spill", [False, True])
def test_recorder_since_returns_only_the_new_rows(tmp_path: Path, spill: bool) -> None:
    rec = HttpRecorder(flush_rows=100, spill_dir=tmp_path / "ev" if spill else None)
    seen = 0
    got = []
    for k in range(1, 1000):
        rec.record(k, k, k + 1, 200, None, 0, 0, "e", "GET", "u", "p", None)
        if k % 37 == 0:
            new = rec.since(seen)
            seen += new.height
            got.append(new)
    got.append(rec.since(seen))
    assert pl.concat(got)["t_intended"].to_list() == list(range(1, 1000))
    assert rec.since(999).height == 0


def test_generator_thresholds_read_the_runs_health() -> None:
    th = Threshold.parse("generator.lag_p99 < 5ms")
    assert th.unit == "ms" and Threshold.parse("generator.cpu_max < 90%").value == pytest.approx(0.9)
    ev = random_rows(10, seed=5)
    res = evaluate(
        [th, "generator.cpu_max < 0.9", "generator.lateness_p99 < 5ms"],
        ev,
        generator={"lag_p99_ms": 12.5, "cpu_max": 0.5, "lateness_p99_ms": None, "ticks": 300},
    )
    assert res["actual"].to_list() == [12.5, 0.5, None]
    assert res["passed"].to_list() == [False, True, False]
    assert evaluate([th], ev)["note"][0].startswith("no generator health")
    with pytest.raises(ThresholdError, match="run-wide"):
        Threshold.parse("generator.lag_p99(phase=peak) < 5ms")
    assert rescope([th, Threshold.parse("p95 < 1s")], "peak") == [Threshold("p95", "<", 1000, phase="peak")]
    watch = ThresholdWatch([Threshold.parse("generator.lag_p99 < 5ms", abort_on_fail=True)])
    assert watch.needs_generator
    assert watch.poll(generator={"lag_p99_ms": 1.0, "ticks": 10}) is None
    assert watch.poll(generator={"lag_p99_ms": 9.0, "ticks": 10}) is not None
