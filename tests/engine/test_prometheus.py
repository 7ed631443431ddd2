"""Live Prometheus export of the load, and the target's own /metrics scraped during a run."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import aiohttp
import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

import taskforge_perf as tfp
from taskforge_perf.errors import ConfigError

FAST = {"hash_iterations": 1000}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def _scrape(session: aiohttp.ClientSession, url: str) -> dict[str, dict[str, float]]:
    """{sample name: {labels text: value}} of one scrape of the exporter."""
    async with session.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out.setdefault(s.name, {})[key] = s.value
    return out


def _total(sample: dict[str, dict[str, float]], name: str) -> float:
    return sum(sample.get(name, {}).values())


async def test_exporter_serves_rising_counters_during_a_run() -> None:
    async with tfp.ReferenceTarget(seed=11, **FAST) as target:
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=3, email_prefix="prom"),
            seed=11,
            metrics_port=0,
            monitor_interval=0.1,
        )
        task = asyncio.ensure_future(tester.run(duration=60, concurrency=4))
        async with aiohttp.ClientSession() as session:
            for _ in range(600):  # the endpoint is announced once the run has started
                if tester.metrics_endpoint is not None or task.done():
                    break
                await asyncio.sleep(0.05)
            url = tester.metrics_endpoint
            assert url is not None and url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
            first = 0.0
            for _ in range(600):  # until load requests show up ...
                m = await _scrape(session, url)
                first = _total(m, "taskforge_perf_requests_total")
                if first > 0 and m.get("taskforge_perf_phase", {}).get("phase=load") == 1:
                    break
                await asyncio.sleep(0.05)
            assert first > 0
            for _ in range(600):  # ... and until they rise between two scrapes
                m = await _scrape(session, url)
                if _total(m, "taskforge_perf_requests_total") > first:
                    break
                await asyncio.sleep(0.05)
            assert _total(m, "taskforge_perf_requests_total") > first
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            # Latency histogram per endpoint: cumulative buckets ending in +Inf == _count.
            buckets = m["taskforge_perf_request_duration_seconds_bucket"]
            counts = m["taskforge_perf_request_duration_seconds_count"]
            health = counts["endpoint=GET /health"]
            assert health > 0 and buckets["endpoint=GET /health,le=+Inf"] == health
            assert m["taskforge_perf_tasks_created_total"][""] > 0
            assert "" in m["taskforge_perf_in_flight"] and "" in m["taskforge_perf_ws_connections"]
            # The server stops with the run.
            with pytest.raises(aiohttp.ClientConnectionError):
                await _scrape(session, url)
    run = tester.last_run
    assert run is not None and run.meta["metrics_port"] == int(url.split(":")[2].split("/")[0])
    # The exporter's totals never exceed the run's rows (they are built from them).
    assert first <= run.events.height


async def test_busy_metrics_port_is_a_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        async with tfp.ReferenceTarget(seed=12, **FAST) as target:
            tester = tfp.LoadTester(target, tfp.UserPool(count=1, email_prefix="busy"), metrics_port=port)
            with pytest.raises(ConfigError, match=f"metrics_port {port}: cannot serve"):
                await tester.run(duration=0.5, concurrency=1)
    with pytest.raises(ConfigError, match="metrics_port must be"):
        tfp.LoadTester("http://127.0.0.1:1", metrics_port=-1)


async def test_target_metrics_agree_with_client_rows_per_route(tmp_path: Path) -> None:
    mix = tfp.RequestMix.from_toml(EXAMPLES / "mix.toml")  # no GET /metrics in the load
    async with tfp.ReferenceTarget(seed=13, **FAST) as target:
        tester = tfp.LoadTester(
            target, tfp.UserPool(count=3, email_prefix="scr"), mix, seed=13, monitor_interval=0.2
        )
        run = await tester.run(duration=1.5, concurrency=4)
    tm = run.target_metrics
    assert dict(tm.schema) == {"t": pl.Int64, "name": pl.String, "labels": pl.String, "value": pl.Float64}
    times = tm["t"].unique().sort()
    scrapes = run.meta["target_metrics"]["scrapes"]
    assert times.len() == scrapes >= 3 and run.meta["target_metrics"]["failures"] == 0
    ev = run.events
    # On the run's clock: a baseline after the reachability check (GET /health) and before the
    # first user signs up, a final scrape after the last request (logout included).
    assert (
        ev["t_end"].min() < times[0] < ev.filter(pl.col("endpoint") == "POST /auth/signup")["t_start"].min()
    )
    assert times[-1] > ev["t_end"].max()
    ev = ev.filter(pl.col("t_start") > times[0])
    req = tm.filter(pl.col("name") == "taskforge_http_requests_total").with_columns(
        route=pl.col("labels").str.extract(r'route="([^"]*)"')
    )
    per_scrape = req.group_by("t", "route").agg(pl.col("value").sum())
    last = per_scrape.filter(pl.col("t") == times[-1])
    first = per_scrape.filter(pl.col("t") == times[0])
    served = {}
    for _t, route, value in last.iter_rows():
        base = first.filter(pl.col("route") == route)["value"].sum()
        served[route] = value - base
    client = (
        ev.filter(pl.col("status") > 0)
        .with_columns(
            route=pl.concat_str(
                pl.col("method").cast(pl.String),
                pl.lit(" "),
                pl.col("endpoint").cast(pl.String).str.split(" ").list.get(1),
            )
        )
        .group_by("route")
        .len()
    )
    sent = dict(client.iter_rows())
    assert sent["POST /tasks"] > 50 and sent["POST /auth/signup"] == 3
    for route, n in sent.items():
        assert served.get(route) == n, (route, n, served)
    # The scrapes themselves are the only GET /metrics the target saw, never load rows.
    assert served["GET /metrics"] == scrapes - 1
    assert ev.filter(pl.col("endpoint").cast(pl.String) == "GET /metrics").height == 0
    # Saved and loaded with the run.
    back = tfp.load_run(run.save(tmp_path / "r"))
    assert back.target_metrics.equals(tm)
    # Charted beside client latency: the target's queue and connection gauges by default.
    chart = back.charts.target_vs_client().to_dict()
    series = {d["series"] for d in chart["vconcat"][1]["data"]["values"]}
    assert 'taskforge_tasks_queued{type="generate-pdf"}' in series and "taskforge_ws_connections" in series
    assert all(s.startswith(("taskforge_tasks_queued{", "taskforge_ws_connections")) for s in series)


async def test_failing_scrape_is_logged_once_and_never_breaks_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with tfp.ReferenceTarget(seed=14, **FAST) as target:
        broken = tfp.Target(target.base_url, metrics_url=target.base_url + "/no-metrics-here")
        tester = tfp.LoadTester(
            broken, tfp.UserPool(count=1, email_prefix="nom"), seed=14, monitor_interval=0.1
        )
        with caplog.at_level(logging.WARNING, logger="taskforge_perf.engine.scrape"):
            run = await tester.run(duration=0.5, concurrency=1)
        garbled = tfp.LoadTester(  # 200 with JSON: the parser refuses it at the end of the run
            tfp.Target(target.base_url, metrics_url=target.base_url + "/health"),
            tfp.UserPool(count=1, email_prefix="nom"),
            monitor_interval=0.1,
        )
        bad = await garbled.run(duration=0.3, concurrency=1)
        off = tfp.LoadTester(
            tfp.Target(target.base_url, metrics_url=None), tfp.UserPool(count=1, email_prefix="nom")
        )
        quiet = await off.run(duration=0.3, concurrency=1)
    assert run.meta["stopped"] == "completed" and run.target_metrics.height == 0
    info = run.meta["target_metrics"]
    assert info["failures"] >= 3 and info["scrapes"] == 0 and "HTTP 404" in info["last_error"]
    warnings = [r for r in caplog.records if "no-metrics-here failed" in r.getMessage()]
    assert len(warnings) == 1
    assert quiet.target_metrics.height == 0 and "target_metrics" not in quiet.meta
    assert bad.meta["stopped"] == "completed" and bad.target_metrics.height == 0
    assert bad.meta["target_metrics"]["scrapes"] == 0 and bad.meta["target_metrics"]["failures"] >= 2
    assert "unparsable metrics text" in bad.meta["target_metrics"]["last_error"]
    assert tfp.Target("http://127.0.0.1:1").metrics_url == "http://127.0.0.1:1/metrics"
    with pytest.raises(ConfigError, match="Target.metrics_url"):
        tfp.Target("http://127.0.0.1:1", metrics_url="ftp://127.0.0.1/metrics")


@pytest.mark.parametrize("spill", [False, True])
async def test_exporter_counts_every_row_across_flushes(tmp_path: Path, spill: bool) -> None:
    """Rows flushed to chunks (or spilled parts, or mid-conversion) between two snapshots count."""
    from taskforge_perf.engine.monitor import Snapshot
    from taskforge_perf.engine.prom import LoadExporter
    from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters

    rec = HttpRecorder(flush_rows=7, spill_dir=tmp_path / "s" if spill else None)
    exporter = LoadExporter(rec, LiveCounters(), 0.5)
    snap = Snapshot(0, 0, "load", 0, 0, 0, 0, {}, None, None, None, 0, 0, 0, 0)

    def record(n: int, start: int) -> None:
        for k in range(start, start + n):
            err = "http_5xx" if k % 5 == 0 else None
            ep = "GET /health" if k % 2 else "POST /tasks generate-pdf"
            rec.record(
                0, 0, (k % 20) * 1_000_000, 500 if err else 200, err, 0, 0, ep, "GET", "u", "load", None
            )

    record(3, 0)
    exporter(snap)
    record(30, 3)  # four buffers filled: some converted, one perhaps still converting
    exporter(snap)
    await asyncio.sleep(0)  # let a conversion step run
    record(9, 33)
    exporter(snap)
    assert sum(exporter.requests.values()) == 42 == rec.rows
    assert sum(exporter.errors.values()) == sum(1 for k in range(42) if k % 5 == 0)
    assert sum(sum(b) for b in exporter.buckets.values()) == 42
    # Bucket of latency k ms: le=0.001 holds 0 and 1 ms, le=0.0025 holds 2 ms, ...
    frame = rec.frame()
    lat = (frame["t_end"] - frame["t_start"]) / 1e9
    assert sum(exporter.sums.values()) == pytest.approx(lat.sum())
    assert sum(b[0] for b in exporter.buckets.values()) == (lat <= 0.001).sum()
