"""Open-model start lateness with and without connections pre-opened before the schedule starts.

Run from the project root with the project's venv::

    .venv/bin/python benchmarks/bench_preopen.py --rates 2000,4000,8000 --duration 3 --repeats 2

Starts bench_engine's nginx (one worker pinned to core 1) and runs the engine's open model (the
TaskForge mix, 20 users, full recording) pinned to core 0 at each rate, interleaving "on demand"
(``PREOPEN_LATENCY_S = 0``: connections opened by the first requests, the old behaviour) and
"pre-opened" (the default sizing). Reports the whole run's p99 start lateness (t_start -
t_intended over every load row), the first second's and the steady state's (after the first
second) separately, the generator's CPU-µs per request and the load average at the time: on a
shared machine the lateness figures move with the load, so compare the interleaved pairs.
Appends a dated section to benchmarks/RESULTS.md unless ``--no-append``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_engine as be  # noqa: E402 - the sibling script's nginx and child runner


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="2000,4000,8000")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args()
    rates = [int(r) for r in a.rates.split(",") if r]
    server = be.Nginx(be.ensure_nginx())
    rows: list[dict[str, Any]] = []
    try:
        server.start()
        for rep in range(a.repeats):
            for rate in rates:
                for mode, lat in (("on demand", 0.0), ("pre-opened", None)):
                    args: dict[str, Any] = {"url": server.url, "duration": a.duration, "rate": rate}
                    if lat is not None:
                        args["preopen_latency_s"] = lat
                    load = os.getloadavg()[0]
                    r = be.run_py("engine", args, a.duration + 120)
                    r.update(rate=rate, mode=mode, rep=rep, loadavg=load)
                    rows.append(r)
                    f, st = r.get("late_ms_first_s") or {}, r.get("late_ms_steady") or {}
                    be.log(
                        f"{rate:>6,}/s {mode:<10} rows {r['requests']:>7,} p99 whole "
                        f"{_fmt(r['late_ms']['p99'])} ms, first s {_fmt(f.get('p99'))}, steady "
                        f"{_fmt(st.get('p99'))}, max {_fmt(r['late_ms']['max'])}; "
                        f"{_fmt(r['cpu_us_per_req'], '.0f')} CPU-us/req; load {load:.1f}; "
                        f"preopen {r.get('preopen')}"
                    )
    finally:
        server.stop()
    lines = [
        "",
        f"## Open model, connections pre-opened or not ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.node()}, {os.cpu_count()} cores, bench_preopen.py)",
        "",
        f"nginx 1 worker on core 1, generator on core 0, TaskForge mix, {a.duration:g} s per run, "
        f"{a.repeats} interleaved repeats; medians. Lateness = t_start - t_intended (ms). "
        "Load average per run in the last column (the benchmark itself counts ~1; more means other "
        "jobs shared the machine).",
        "",
        "| rate | connections | p99 whole run | p99 first s | p99 steady | max | CPU-µs/req | pre-opened "
        "| on demand | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in rates:
        for mode in ("on demand", "pre-opened"):
            rs = [r for r in rows if r["rate"] == rate and r["mode"] == mode]

            def m(key: Any, rs: list[dict[str, Any]] = rs) -> float | None:
                vals = [key(r) for r in rs]
                vals = [v for v in vals if v is not None]
                return statistics.median(vals) if vals else None

            pre = [r.get("preopen") or {} for r in rs]
            lines.append(
                f"| {rate:,} | {mode} | {_fmt(m(lambda r: r['late_ms']['p99']), '.2f')} "
                f"| {_fmt(m(lambda r: (r.get('late_ms_first_s') or {}).get('p99')), '.2f')} "
                f"| {_fmt(m(lambda r: (r.get('late_ms_steady') or {}).get('p99')), '.2f')} "
                f"| {_fmt(m(lambda r: r['late_ms']['max']), '.1f')} "
                f"| {_fmt(m(lambda r: r['cpu_us_per_req']), '.0f')} "
                f"| {', '.join(str(p.get('opened', 0)) for p in pre)} "
                f"| {', '.join(str(p.get('on_demand', '-')) for p in pre)} "
                f"| {', '.join(format(r['loadavg'], '.1f') for r in rs)} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if not a.no_append:
        with be.RESULTS.open("a") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
