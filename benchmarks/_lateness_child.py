"""One open-model run of the tree on PYTHONPATH (``bench_lateness_ab.py``'s child); prints JSON.

Usage: ``python -P benchmarks/_lateness_child.py '{"url": ..., "rate": 16000, "duration": 5}'``
(``"trace": true`` times GC passes, column conversions, part writes and health intervals).
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import json
import os
import resource
import sys
import time
from collections import defaultdict
from typing import Any


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


Events = list[tuple[str, int, int, int]]


def _wrap(events: Events, owner: Any, name: str, label: str, process: bool = False) -> None:
    """Replace ``owner.name`` by a wrapper that logs (label, start, end, CPU ns)."""
    orig = getattr(owner, name)
    cpu = time.process_time_ns if process else time.thread_time_ns

    def wrapped(*args: Any) -> Any:
        t, c = time.perf_counter_ns(), cpu()
        try:
            return orig(*args)
        finally:
            events.append((label, t, time.perf_counter_ns(), cpu() - c))

    setattr(owner, name, wrapped)


def main() -> None:
    a = json.loads(sys.argv[1])
    import polars as pl
    import uvloop

    import taskforge_perf as tfp
    import taskforge_perf.engine.clock as ck

    clocks: list[Any] = []
    orig_init = ck.Clock.__init__

    def init(self: Any) -> None:
        orig_init(self)
        clocks.append(self)

    ck.Clock.__init__ = init  # type: ignore[method-assign]
    events: Events = []
    if a.get("trace"):
        started: dict[str, int] = {}

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                started["t"], started["c"] = time.perf_counter_ns(), time.thread_time_ns()
            else:
                events.append(
                    (
                        f"gc{info['generation']}",
                        started["t"],
                        time.perf_counter_ns(),
                        time.thread_time_ns() - started["c"],
                    )
                )

        gc.callbacks.append(on_gc)
        import taskforge_perf.engine.recorder as rec

        _wrap(events, rec, "write_part", "write_part", process=True)
        _wrap(events, rec.ColumnBuffer, "_convert_column", "convert_col")
        try:
            import taskforge_perf.engine.health as health

            _wrap(events, health.HealthProbe, "_close_interval", "health_close")
        except ImportError:  # a tree from before the health probe
            pass
    tester = tfp.LoadTester(
        tfp.Target(a["url"]), tfp.UserPool(count=20), tfp.RequestMix.taskforge(), seed=1, max_in_flight=1000
    )
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    load_avg = os.getloadavg()[0]
    c0, w0 = cpu_s(), time.perf_counter()
    run = loop.run_until_complete(tester.run(duration=a["duration"], rate=a["rate"]))
    cpu, wall = cpu_s() - c0, time.perf_counter() - w0
    load = run.events.filter(pl.col("phase") == "load")
    n = load.height
    late = (load["t_start"] - load["t_intended"]) / 1e6
    t0 = load["t_intended"].min()
    steady = load.filter(pl.col("t_intended") >= t0 + 1_000_000_000)
    gen = run.meta.get("generator") or {}
    out: dict[str, Any] = {
        "module": tfp.__file__,
        "rate": a["rate"],
        "rows": n,
        "p50": late.quantile(0.5),
        "p99": late.quantile(0.99),
        "max": late.max(),
        "steady_p99": ((steady["t_start"] - steady["t_intended"]) / 1e6).quantile(0.99),
        "late2": int((late > 2).sum()),
        "cap_hits": (run.meta.get("phases", {}).get("load") or {}).get("cap_hits", 0),
        "cpu_us": cpu / n * 1e6,
        "cpu_share": cpu / wall,
        "load": load_avg,
        "gen": {
            k: gen.get(k) for k in ("saturated", "reasons", "lateness_p99_ms", "own_lag_p99_ms", "cpu_max")
        },
        "preopen": run.meta.get("preopen"),
    }
    if a.get("trace"):
        base = clocks[0].t0 if clocks else 0
        lo, hi = int(t0), int(load["t_intended"].max())
        agg: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for kind, s, e, c in events:
            s, e = s - base, e - base
            spans[kind].append((s, e))
            if lo <= s <= hi:
                g = agg[kind]
                g[0] += 1
                g[1] += e - s
                g[2] += c
                g[3] = max(g[3], c)
        out["events"] = {
            k: {"n": v[0], "wall_ms": v[1] / 1e6, "cpu_ms": v[2] / 1e6, "cpu_max_ms": v[3] / 1e6}
            for k, v in agg.items()
        }
        late_rows = load.filter((pl.col("t_start") - pl.col("t_intended")) > 2_000_000).select(
            "t_intended", "t_start"
        )
        overlap = {}
        for kind, iv in spans.items():
            iv.sort()
            starts = [x[0] for x in iv]
            hits = 0
            for ti, ts in late_rows.iter_rows():
                j = bisect.bisect_right(starts, ts) - 1
                hits += j >= 0 and iv[j][1] >= ti
            overlap[kind] = hits
        out["late_rows_overlapping"] = overlap
    print(json.dumps(out, default=str))


main()
