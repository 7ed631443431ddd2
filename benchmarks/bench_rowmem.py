"""Resident bytes per recorded row while a run goes (rows streamed to disk), and per buffered row.

Run from the project root with the project's venv::

    .venv/bin/python benchmarks/bench_rowmem.py --duration 8

1. A LoadTester closed-model run (TaskForge mix: every POST /tasks row carries a task id) against
   bench_engine's nginx, generator pinned to core 0; a listener samples the process's resident set
   (``/proc/self/statm``) and the rows recorded at each monitor tick. The slope of RSS over rows
   (least squares, after the first quarter of the run: imports, set-up and the first part files
   are done) is the resident cost of one more row with part files written every 8,192 rows / 2 s.
2. The recorder's buffer between flushes: tracemalloc's bytes per row of 8,192 rows shaped like
   the run's (times in ns, a 32-character task id), the most a run holds before a flush.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def child_run(url: str, duration: float) -> dict[str, Any]:
    import asyncio

    import uvloop

    import taskforge_perf as tfp

    samples: list[tuple[int, int]] = []

    def listener(snap: Any) -> None:
        samples.append((snap.requests, rss()))

    tester = tfp.LoadTester(
        tfp.Target(url), tfp.UserPool(count=20), tfp.RequestMix.taskforge(), seed=1, listeners=[listener]
    )
    run = uvloop.run(tester.run(duration=duration, concurrency=50))
    asyncio.set_event_loop(None)
    pts = samples[len(samples) // 4 :]
    n = len(pts)
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    var = sum((p[0] - mx) ** 2 for p in pts)
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / var if var else None
    tasks = run.events.filter(run.events["task_id"].is_not_null()).height
    return {
        "rows": run.events.height,
        "task_rows": tasks,
        "samples": len(samples),
        "rss_mb_first": samples[0][1] / 2**20 if samples else None,
        "rss_mb_last": samples[-1][1] / 2**20 if samples else None,
        "bytes_per_row_slope": slope,
        "rss_bytes_per_row_whole_run": (samples[-1][1] - samples[0][1])
        / max(samples[-1][0] - samples[0][0], 1)
        if samples
        else None,
    }


def buffer_bytes_per_row(rows: int = 8192) -> float:
    from taskforge_perf.engine.recorder import HttpRecorder

    rec = HttpRecorder(flush_rows=rows + 1)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    base = 10**12
    for i in range(rows):
        t = base + i * 1000
        tid = uuid.uuid4().hex  # the row keeps its task id string, as a run's parser makes it
        rec.record(t, t + 50_000, t + 400_000, 202, None, 40, 120, "POST /tasks", "POST", "u@x", "load", tid)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child_run(a.child[0], float(a.child[1]))))
        return 0
    import bench_engine as be

    print(f"recorder buffer: {buffer_bytes_per_row():.0f} bytes per buffered HTTP row (task id included)")
    server = be.Nginx(be.ensure_nginx())
    try:
        server.start()
        cmd = ["taskset", "-c", be.GEN_CORE, sys.executable, __file__, "--child", server.url, str(a.duration)]
        with tempfile.TemporaryDirectory(prefix="bench-rowmem-") as store:  # the run's folder
            env = dict(os.environ, TASKFORGE_PERF_RUNS=store)
            out = subprocess.run(
                cmd, capture_output=True, text=True, check=True, timeout=a.duration + 120, env=env
            )
        r = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        server.stop()
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
