"""Open-model start lateness, A/B between source trees (issue 19 item 2, h26).

Run from the project root with the project's venv::

    .venv/bin/python benchmarks/bench_lateness_ab.py --trees /tmp/old,/tmp/main,. \
        --rates 8000,16000,32000 --rounds 3 --rt

Starts bench_engine's nginx (one worker pinned to core 1) and, round by round, runs one open-model
run per tree and rate (``LoadTester`` + ``RequestMix.taskforge()``, 20 users, max_in_flight 1000,
full recording, the tree's defaults: pre-opened connections where the tree has them) in a child
pinned to core 0 that imports the tree (``python -P``, ``cwd`` and ``PYTHONPATH`` = the tree; the
imported module is printed per run). Lateness = t_start - t_intended over the load rows, exactly
as recorded; CPU-µs/req = the child's user+sys CPU over ``tester.run`` / load rows (set-up and the
final frame included, as in bench_preopen.py).

``--rt`` runs the generator and nginx under ``chrt -f`` (SCHED_FIFO; the kernel still leaves other
processes 5% of each core): on a machine shared with other jobs this keeps their CPU time out of
the comparison; without it, lateness on a busy machine measures the neighbours. ``--trace`` adds
the time of each GC pass, column conversion, part write and health interval (wall and CPU) and
counts the late rows each overlaps. Prints one JSON line per run and a median table; nothing is
appended to RESULTS.md (the figures quoted there name this script).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_engine as be  # noqa: E402 - the sibling script's nginx

CHILD = HERE / "_lateness_child.py"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trees", default=".", help="comma-separated source trees (checkouts)")
    ap.add_argument("--rates", default="16000")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rt", action="store_true", help="generator and nginx under chrt -f")
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--out", default=None, help="append the JSON lines to this file")
    a = ap.parse_args()
    trees = [str(Path(t).resolve()) for t in a.trees.split(",") if t]
    rates = [int(r) for r in a.rates.split(",") if r]
    server = be.Nginx(be.ensure_nginx())
    rows: list[dict[str, Any]] = []
    try:
        server.start()
        if a.rt:
            for pid in server.pids():
                subprocess.run(["chrt", "-f", "-p", "5", str(pid)], check=False)
        for rnd in range(a.rounds):
            for rate in rates:
                for tree in trees:
                    args = {"url": server.url, "rate": rate, "duration": a.duration, "trace": a.trace}
                    env = dict(os.environ, PYTHONPATH=tree)
                    env.setdefault("TASKFORGE_PERF_RUNS", str(Path(tempfile.gettempdir()) / "bench-lateness"))
                    cmd = ["taskset", "-c", be.GEN_CORE, sys.executable, "-P", str(CHILD), json.dumps(args)]
                    if a.rt:
                        cmd = ["chrt", "-f", "10", *cmd]
                    p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=600)
                    if p.returncode:
                        be.log(f"{tree} {rate}: failed {p.stderr[-1500:]}")
                        continue
                    r = json.loads(p.stdout.strip().splitlines()[-1])
                    r.update(round=rnd, tree=tree)
                    rows.append(r)
                    if a.out:
                        with open(a.out, "a") as fh:
                            fh.write(json.dumps(r) + "\n")
                    gen = r["gen"].get("saturated")
                    be.log(
                        f"{Path(tree).name:>10} {rate:>6,}/s p99 {r['p99']:.2f} ms "
                        f"(steady {r['steady_p99']:.2f}, max {r['max']:.1f}), late>2ms {r['late2']:,}, "
                        f"cap hits {r['cap_hits']:,}, {r['cpu_us']:.1f} CPU-us/req, saturated {gen}, "
                        f"load {r['load']:.1f}"
                    )
    finally:
        server.stop()
    print(
        "\n| tree | rate | p99 whole (runs) | p99 steady | max | late > 2 ms | CPU-µs/req | saturated "
        "| load |\n|---|---|---|---|---|---|---|---|---|"
    )
    for tree in trees:
        for rate in rates:
            rs = [r for r in rows if r["tree"] == tree and r["rate"] == rate]
            if not rs:
                continue

            def med(k: str, rs: list[dict[str, Any]] = rs) -> float:
                return statistics.median(r[k] for r in rs)

            runs = ", ".join(format(r["p99"], ".2f") for r in rs)
            sat = ", ".join(str(r["gen"].get("saturated")) for r in rs)
            loads = ", ".join(format(r["load"], ".1f") for r in rs)
            print(
                f"| {Path(tree).name} | {rate:,} | {med('p99'):.2f} ({runs}) | {med('steady_p99'):.2f} "
                f"| {med('max'):.1f} | {med('late2'):,.0f} | {med('cpu_us'):.1f} | {sat} | {loads} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
