"""Generator CPU per recorded request, the engine's closed model against wrk (robust to a shared machine).

Run from the project root with the project's venv::

    .venv/bin/python benchmarks/bench_cpu.py --repeats 3

Wall-clock throughput is unreliable while other jobs share the cores, CPU time per request much
less so. Each round runs, pinned to core 0 against bench_engine's nginx on core 1 (GET of a small
static file, 50 connections):

- the engine (LoadTester closed model, full recording) for ``--short`` and ``--long`` seconds: the
  per-request figure is the *difference* of the process CPU over the difference of the rows, so
  the fixed costs (imports, set-up, the final frame, the run folder) cancel out;
- wrk for ``--long`` seconds: its CPU (user+sys of the child) over the requests it reports.

Prints each round and the medians; appends to benchmarks/RESULTS.md unless ``--no-append``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_engine as be  # noqa: E402 - the sibling script's nginx and child runner


def run_engine(url: str, seconds: float, conns: int) -> dict[str, Any]:
    args = {"url": url, "duration": seconds, "concurrency": conns, "static_path": be.STATIC_PATH}
    return be.run_py("engine", args, seconds + 120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--short", type=float, default=2.0)
    ap.add_argument("--long", type=float, default=6.0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--label", default="", help="what build this is (shown in RESULTS.md)")
    ap.add_argument("--no-wrk", action="store_true")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args()
    have_wrk = shutil.which("wrk") is not None and not a.no_wrk
    server = be.Nginx(be.ensure_nginx())
    rounds: list[dict[str, Any]] = []
    try:
        server.start()
        url = server.url + be.STATIC_PATH
        for _ in range(a.repeats):
            load = os.getloadavg()[0]
            s = run_engine(server.url, a.short, a.connections)
            lg = run_engine(server.url, a.long, a.connections)
            rows = lg["requests"] - s["requests"]
            diff = (lg["cpu_s"] - s["cpu_s"]) / rows * 1e6 if rows > 0 else None
            w = be.run_wrk(url, a.long, a.connections) if have_wrk else {}
            r = {
                "engine_us": diff,
                "engine_whole_us": lg["cpu_us_per_req"],
                "engine_rps": lg["rps"],
                "engine_errors": lg["errors"],
                "wrk_us": w.get("cpu_us_per_req"),
                "wrk_rps": w.get("requests", 0) / a.long if w else None,
                "loadavg": load,
            }
            rounds.append(r)
            be.log(
                f"engine {diff or 0:.1f} CPU-us/req (whole run {lg['cpu_us_per_req']:.1f}, "
                f"{lg['rps']:,.0f} req/s, errors {lg['errors']}); wrk {r['wrk_us'] or 0:.1f} CPU-us/req "
                f"({r['wrk_rps'] or 0:,.0f} req/s); load {load:.1f}"
            )
    finally:
        server.stop()

    def med(key: str) -> float | None:
        vals = [r[key] for r in rounds if r[key] is not None]
        return statistics.median(vals) if vals else None

    ratios = [r["engine_us"] / r["wrk_us"] for r in rounds if r["engine_us"] and r["wrk_us"]]
    ratio = statistics.median(ratios) if ratios else None
    text = (
        f"\n## Generator CPU per request, engine vs wrk ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.node()}, {os.cpu_count()} cores, bench_cpu.py{', ' + a.label if a.label else ''})\n\n"
        f"GET of a static file from nginx (core 1), generator on core 0, {a.connections} connections, "
        f"{a.repeats} rounds. Engine: (CPU of a {a.long:g} s run - CPU of a {a.short:g} s run) / "
        "(rows - rows): fixed costs cancel. Load average per round "
        f"{', '.join(format(r['loadavg'], '.1f') for r in rounds)} (the benchmark itself counts ~1; more "
        "means other jobs shared the machine and req/s are not comparable): read CPU per request.\n\n"
        "| | engine CPU-µs/req | engine whole-run CPU-µs/req | wrk CPU-µs/req | engine/wrk | engine req/s "
        "| wrk req/s |\n|---|---|---|---|---|---|---|\n"
        f"| median | {med('engine_us') or 0:.1f} | {med('engine_whole_us') or 0:.1f} | "
        f"{med('wrk_us') or 0:.1f} | {ratio or 0:.2f}x | {med('engine_rps') or 0:,.0f} "
        f"| {med('wrk_rps') or 0:,.0f} |\n"
    )
    print(text)
    if not a.no_append:
        with be.RESULTS.open("a") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
