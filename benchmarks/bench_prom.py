"""What do the Prometheus exporter and the target scraper cost the load?

1. The exporter's per-interval work (``LoadExporter.__call__``) on 500 new rows per tick (1,000 req/s
   at the default 0.5 s interval), across recorder flushes: median and max ms per tick.
2. The scraper: parsing one scrape of the reference target's /metrics with prometheus_client's
   parser (done once at the end of the run, not on the event loop while it goes).
3. An A/B on the reference target (subprocess on 127.0.0.1): the same open-model load with the
   sidecars off (``metrics_url=None``, no port) and on (``metrics_port=0`` + scraping every
   0.5 s), interleaved rounds; achieved req/s and start lateness p99 (t_start - t_intended).

    .venv/bin/python benchmarks/bench_prom.py                  # ~40 s, appends RESULTS.md
    .venv/bin/python benchmarks/bench_prom.py --rounds 1 --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

import taskforge_perf as tfp  # noqa: E402
from taskforge_perf.engine.monitor import Snapshot  # noqa: E402
from taskforge_perf.engine.prom import LoadExporter  # noqa: E402
from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters  # noqa: E402
from taskforge_perf.engine.scrape import parse_samples  # noqa: E402


async def exporter_ticks(rows_per_tick: int = 500, ticks: int = 200) -> list[float]:
    rec = HttpRecorder()
    exp = LoadExporter(rec, LiveCounters(), 0.5)
    snap = Snapshot(0, 0, "load", 0, 0, 0, 0, {}, None, None, None, 0, 0, 0, 0)
    eps = [
        "GET /health",
        "POST /tasks generate-pdf",
        "POST /tasks resize-image",
        "POST /tasks compress-video",
    ]
    out = []
    k = 0
    for _ in range(ticks):
        for _ in range(rows_per_tick):
            err = "http_5xx" if k % 97 == 0 else None
            rec.record(k, k, k + (k % 50) * 1_000_000, 200, err, 10, 10, eps[k % 4], "GET", "u", "load", None)
            k += 1
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        exp(snap)
        out.append((time.perf_counter() - t0) * 1e3)
    assert sum(exp.requests.values()) == k
    return out


def ab(rounds: int, duration: float, rate: float) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tfp.ReferenceTarget(seed=1, hash_iterations=1000) as target:
        for r in range(rounds):
            for on in (False, True) if r % 2 == 0 else (True, False):
                t = tfp.Target(target.base_url, metrics_url="auto" if on else None)
                tester = tfp.LoadTester(
                    t,
                    tfp.UserPool(count=5, email_prefix="bp"),
                    seed=r,
                    metrics_port=0 if on else None,
                    live=False,
                )
                run = tester.run_sync(duration=duration, rate=rate)
                load = run.load_events()
                late = (load["t_start"] - load["t_intended"]) / 1e6
                rows.append(
                    {
                        "round": r,
                        "sidecars": "on" if on else "off",
                        "rps": load.height / run.duration_s,
                        "late_p99_ms": float(late.quantile(0.99) or 0.0),
                        "scrapes": (run.meta.get("target_metrics") or {}).get("scrapes", 0),
                    }
                )
        # One scrape after the load (every route, status and task type has samples by now).
        text = urllib.request.urlopen(target.base_url + "/metrics").read().decode()
        n = 50
        t0 = time.perf_counter()
        for _ in range(n):
            samples = parse_samples(text)
        rows.insert(0, {"parse_ms": (time.perf_counter() - t0) / n * 1e3, "samples": len(samples)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    ticks = asyncio.run(exporter_ticks())
    res = ab(a.rounds, a.duration, a.rate)
    parse = res[0]
    runs = pl.DataFrame(res[1:])
    print(runs)
    agg = runs.group_by("sidecars").agg(
        pl.col("rps").median(), pl.col("late_p99_ms").median(), pl.col("scrapes").median()
    )
    by = {r["sidecars"]: r for r in agg.iter_rows(named=True)}
    lines = [
        "",
        f"## Prometheus exporter and target scraper ({datetime.date.today()}, {platform.node()}, "
        f"{platform.python_version()}, benchmarks/bench_prom.py)",
        "",
        "- exporter tick on 500 new rows (1,000 req/s at 0.5 s), 200 ticks across recorder flushes: "
        f"median **{statistics.median(ticks):.2f} ms**, p99 {sorted(ticks)[int(0.99 * len(ticks))]:.2f} ms, "
        f"max {max(ticks):.2f} ms per tick (not per request; the first tick imports prometheus_client)",
        f"- parsing one scrape of the reference target ({parse['samples']} samples) with "
        f"prometheus_client.parser: **{parse['parse_ms']:.2f} ms**, done when the run ends, not on the loop",
        "- A/B (noisy shared machine: treat < ~25% as unresolved), "
        f"open model {a.rate:g} req/s x {a.duration:g} s, {a.rounds} interleaved rounds (medians): "
        f"off {by['off']['rps']:.1f} req/s, lateness p99 {by['off']['late_p99_ms']:.2f} ms; "
        f"on {by['on']['rps']:.1f} req/s, lateness p99 {by['on']['late_p99_ms']:.2f} ms "
        f"({by['on']['scrapes']:.0f} scrapes per run)",
    ]
    print("\n".join(lines))
    if not a.no_write:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
