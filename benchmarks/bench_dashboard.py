"""Does the live dashboard slow the load? Generator throughput with the dashboard on vs off.

Runs inside a real Jupyter kernel (started by nbclient, like a notebook a user runs), so the
dashboard's widget updates really travel as comm messages over the kernel's IOPub socket. One
reference target (subprocess, 127.0.0.1) serves every run; each round runs the same closed-model
load twice, dashboard on (``live=True``) and off (``live=False``), in alternating order (on/off,
off/on, ...), for both ways a notebook starts a run: ``await tester.run(...)`` (the load shares
the kernel's event loop with the dashboard) and ``tester.run_sync(...)`` (the load on its own
uvloop thread). Reported: req/s per run, the on/off ratio as the median of per-round ratios
(goal: >= 0.95), and the cost of one dashboard update measured in the kernel.

    .venv/bin/python benchmarks/bench_dashboard.py                 # ~2 min, appends RESULTS.md
    .venv/bin/python benchmarks/bench_dashboard.py --duration 3 --rounds 2 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from taskforge_perf.report import execute_notebook  # noqa: E402

KERNEL_CODE = """
import gc, json, resource, time
import taskforge_perf as tfp
from taskforge_perf.dashboard import LiveDashboard

DURATION, ROUNDS, CONCURRENCY, MODES = {duration!r}, {rounds!r}, {concurrency!r}, {modes!r}
results = []
# Instrumentation (this benchmark only): wall time spent taking snapshots and in the dashboard.
from taskforge_perf.engine.monitor import Monitor
spent = [0.0]


def timed(fn):
    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            spent[0] += time.perf_counter() - t
    return wrapper


Monitor.snapshot = timed(Monitor.snapshot)
LiveDashboard.__call__ = timed(LiveDashboard.__call__)


def cpu():
    # the whole kernel process: the load, the monitor, the widgets and the IOPub thread
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime

with tfp.ReferenceTarget(seed=9, hash_iterations=1000) as target:
    users = tfp.UserPool(count=20, email_prefix="bench")
    mix = tfp.RequestMix.taskforge()
    for r in range(ROUNDS):
        for mode in MODES:
            order = (True, False) if r % 2 == 0 else (False, True)
            for live in order:
                tester = tfp.LoadTester(target, users, mix, seed=r, live=live)
                c0, spent[0] = cpu(), 0.0
                if mode == "await":
                    run = await tester.run(duration=DURATION, concurrency=CONCURRENCY)
                else:
                    run = tester.run_sync(duration=DURATION, concurrency=CONCURRENCY)
                cpu_s = cpu() - c0
                rows = run.load_events().height
                results.append(dict(round=r, mode=mode, live=live, rows=rows,
                                    duration_s=run.duration_s, rps=rows / run.duration_s,
                                    cpu_us=cpu_s / max(run.events.height, 1) * 1e6,
                                    busy_share=spent[0] / run.duration_s))
                del run, tester
                gc.collect()  # the previous run's frames are not collected during the next one
    # The cost of one redraw with real comm messages (the throttle allows ~2-4 per second).
    snap = tfp.Snapshot(elapsed_s=1.0, planned_s=60.0, phase="peak", phase_remaining_s=5.0,
                        rps=400.0, requests=1000, in_flight=10, errors={{"timeout": 2}},
                        approx_p50_ms=1.0, approx_p95_ms=2.0, approx_p99_ms=3.0,
                        tasks_created=900, ws_open=50, ws_completed=800, late=0)
    dash = LiveDashboard(title="bench", planned_s=60.0)
    n = 500
    t0 = time.perf_counter()
    for i in range(n):
        dash.update(snap)
    update_us = (time.perf_counter() - t0) / n * 1e6
    dash.finish(None)
print("BENCH " + json.dumps(dict(results=results, update_us=update_us)))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per run (default 6)")
    ap.add_argument("--rounds", type=int, default=3, help="on/off pairs per mode (default 3)")
    ap.add_argument("--concurrency", type=int, default=50, help="virtual users (default 50)")
    ap.add_argument("--modes", default="await,run_sync", help="await, run_sync or both")
    ap.add_argument(
        "--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md"
    )
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    load_before = os.getloadavg()
    code = KERNEL_CODE.format(
        duration=args.duration, rounds=args.rounds, concurrency=args.concurrency, modes=modes
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    budget = (args.duration + 4) * args.rounds * 2 * len(modes) + 120
    nb = execute_notebook(
        nb,
        cwd=ROOT,
        timeout=budget,
        progress=lambda m: print(f"bench_dashboard: {m}", file=sys.stderr),
    )
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.output_type == "stream")
    data = json.loads(text.split("BENCH ", 1)[1])
    res = data["results"]
    lines = []
    table = [
        "| mode | round | live on req/s | live off req/s | on/off req/s | "
        "on/off CPU-µs per request |",
        "|---|---|---|---|---|---|",
    ]
    summary = []
    for mode in modes:
        ratios, cpu_ratios = [], []
        for r in range(args.rounds):
            on = next(x for x in res if x["mode"] == mode and x["round"] == r and x["live"])
            off = next(x for x in res if x["mode"] == mode and x["round"] == r and not x["live"])
            ratios.append(on["rps"] / off["rps"])
            cpu_ratios.append(on["cpu_us"] / off["cpu_us"])
            table.append(
                f"| {mode} | {r + 1} | {on['rps']:,.0f} | {off['rps']:,.0f} | "
                f"{ratios[-1]:.3f} | {cpu_ratios[-1]:.3f} |"
            )
        med = statistics.median(ratios)
        verdict = "within 5%" if med >= 0.95 else "MORE than 5% slower"
        summary.append(
            f"- `{mode}`: throughput dashboard on / off = **{med:.3f}** (median of "
            f"per-round ratios {', '.join(f'{x:.3f}' for x in ratios)}): {verdict}; "
            f"CPU per request on / off = {statistics.median(cpu_ratios):.3f}"
        )
        busy = [x["busy_share"] for x in res if x["mode"] == mode and x["live"]]
        summary.append(
            f"  - time the load's thread spent in snapshots + dashboard: "
            f"{statistics.median(busy):.3%} of the run (max {max(busy):.3%}); the "
            "deterministic bound on what the dashboard can cost a CPU-bound generator"
        )
    summary.append(
        f"- one dashboard redraw (widgets + comm messages, in the kernel): "
        f"{data['update_us']:.0f} µs; at most 4 per second (monitor every 0.5 s, "
        f"throttle 0.25 s)"
    )
    load_after = os.getloadavg()
    lines += [
        f"## Dashboard overhead — {datetime.date.today().isoformat()}",
        "",
        f"Machine: {os.cpu_count()} cores; Python {platform.python_version()}. Load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after. Inside a Jupyter kernel "
        f"(nbclient); reference target on 127.0.0.1; closed model, {args.concurrency} users, "
        f"TaskForge mix, {args.duration:g} s per run, {args.rounds} interleaved on/off pairs per "
        "mode. Script: `benchmarks/bench_dashboard.py`.",
        "",
        *table,
        "",
        *summary,
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write("\n" + report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
