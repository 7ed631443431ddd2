"""Contenders run by ``bench_engine.py``, one per process (so ``taskset`` pinning applies).

Usage: ``python benchmarks/_runners.py <kind> '<json args>'``; prints one JSON object on the last
line of stdout. CPU figures are the process's own user+sys time (``RUSAGE_SELF``) around the
measured part only (imports, loop creation and process start-up excluded).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import sys
import time
import uuid
from typing import Any


def cpu_s() -> float:
    """User + system CPU seconds of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def new_loop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


# --- a. the project's closed model (or c'. open model), full recording ----------------------------


def run_engine(args: dict[str, Any]) -> dict[str, Any]:
    """LoadTester with the TaskForge mix against nginx, closed (concurrency) or open (rate)."""
    import polars as pl

    import taskforge_perf as tfp

    if args.get("static_path"):  # engine overhead alone: one unauthenticated GET of a static file
        mix = tfp.RequestMix([tfp.Endpoint("GET static", "GET", args["static_path"], auth=False)])
    else:
        mix = tfp.RequestMix.taskforge()
    tester = tfp.LoadTester(
        tfp.Target(args["url"]),
        tfp.UserPool(count=20),
        mix,
        seed=1,
        max_in_flight=args.get("max_in_flight", 1000),
        http_client=args.get("http_client", "fast"),
    )
    if "preopen_latency_s" in args:  # 0: no connections opened before the schedule (the old way)
        import taskforge_perf.engine.http as engine_http

        engine_http.PREOPEN_LATENCY_S = float(args["preopen_latency_s"])
    kw: dict[str, Any] = {"duration": args["duration"]}
    if args.get("rate"):
        kw["rate"] = args["rate"]
    else:
        kw["concurrency"] = args["concurrency"]
    loop = new_loop()
    asyncio.set_event_loop(loop)
    c0, w0 = cpu_s(), time.perf_counter()
    try:
        run = loop.run_until_complete(tester.run(**kw))
    finally:
        loop.close()
    cpu, wall = cpu_s() - c0, time.perf_counter() - w0
    ev = run.events
    load = ev.filter(pl.col("phase") == "load")
    n = load.height
    dur = run.meta["duration_s"]
    errors = load.filter(pl.col("error").is_not_null()).group_by("error").len()
    out: dict[str, Any] = {
        "requests": n,
        "rows_total": ev.height,
        "duration_s": dur,
        "rps": n / dur if dur > 0 else 0.0,
        # CPU of the whole tester.run (20 signups + logouts and the final frame included; they are
        # a few dozen requests against ~10^5), over the load rows.
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_us_per_req": cpu / n * 1e6 if n else None,
        "cpu_share": cpu / wall if wall else None,
        "errors": {str(r[0]): int(r[1]) for r in errors.iter_rows()},
        "phase": run.meta["phases"].get("load", {}),
        "tasks_created": run.meta["counters"].get("tasks_created"),
    }
    if args.get("rate"):
        lat = load.select(((pl.col("t_start") - pl.col("t_intended")) / 1e6).alias("ms"))["ms"]
        out["late_ms"] = {
            "p50": lat.quantile(0.5),
            "p99": lat.quantile(0.99),
            "max": lat.max(),
        }
        # Whole run vs first second vs steady state (after the first second), by intended time.
        t0 = load["t_intended"].min()
        first = load.filter(pl.col("t_intended") < t0 + 1_000_000_000)
        rest = load.filter(pl.col("t_intended") >= t0 + 1_000_000_000)
        for key, part in (("first_s", first), ("steady", rest)):
            ms = ((part["t_start"] - part["t_intended"]) / 1e6) if part.height else None
            out[f"late_ms_{key}"] = (
                {"p99": ms.quantile(0.99), "max": ms.max(), "n": part.height} if ms is not None else None
            )
        out["preopen"] = run.meta.get("preopen")
        out["sent"] = load.filter(pl.col("error").is_null() | (pl.col("error") != "dropped")).height
    return out


# --- c. a bare aiohttp loop, no recording ------------------------------------------------------


def run_bare(args: dict[str, Any]) -> dict[str, Any]:
    """N coroutines on one ClientSession doing GET of the static file, on uvloop."""
    import aiohttp

    url = args["url"] + args["path"]
    duration = args["duration"]
    conc = args["concurrency"]

    async def main() -> tuple[int, int, float, float]:
        count = errors = 0
        connector = aiohttp.TCPConnector(limit=conc, limit_per_host=0, keepalive_timeout=30)
        async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as session:
            async with session.get(url) as r:  # warm one connection, check the target
                await r.read()
            stop_at = time.perf_counter() + duration

            async def worker() -> None:
                nonlocal count, errors
                get = session.get
                while time.perf_counter() < stop_at:
                    try:
                        async with get(url) as resp:
                            await resp.read()
                            if resp.status != 200:
                                errors += 1
                    except (aiohttp.ClientError, OSError):
                        errors += 1
                    count += 1

            c0, w0 = cpu_s(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conc)))
            return count, errors, cpu_s() - c0, time.perf_counter() - w0

    loop = new_loop()
    try:
        n, errors, cpu, wall = loop.run_until_complete(main())
    finally:
        loop.close()
    return {
        "requests": n,
        "errors": errors,
        "duration_s": wall,
        "rps": n / wall,
        "cpu_s": cpu,
        "cpu_us_per_req": cpu / n * 1e6 if n else None,
        "cpu_share": cpu / wall,
    }


# --- 4. the recorder's bytes per event ---------------------------------------------------------


def run_recorder(args: dict[str, Any]) -> dict[str, Any]:
    """Record n synthetic TaskForge-like events, flush, and size the frame."""
    from taskforge_perf.engine.recorder import HttpRecorder
    from taskforge_perf.mix import RequestMix

    n = args["n"]
    rng = random.Random(7)
    mix = RequestMix.taskforge()
    eps = [mix.pick(rng) for _ in range(4096)]
    users = [f"loadtest{i}@example.com" for i in range(1, 21)]
    # Pre-built inputs so that the timed loop measures record(), not uuid4() or random().
    tids: list[str | None] = [str(uuid.uuid4()) if e.creates_task else None for e in eps]
    task_ids = [str(uuid.uuid4()) if tids[i % 4096] is not None else None for i in range(n)]
    names = [e.name for e in eps]
    methods = [e.method for e in eps]
    usr = [users[rng.randrange(20)] for _ in range(4096)]

    rec = HttpRecorder()
    record = rec.record
    t = 1_000_000
    t0 = time.perf_counter_ns()
    for i in range(n):
        j = i & 4095
        record(
            t,
            t + 1_000,
            t + 900_000,
            202,
            None,
            60,
            120,
            names[j],
            methods[j],
            usr[j],
            "load",
            task_ids[i],
        )
        t += 100_000
    t1 = time.perf_counter_ns()

    def noop(*a: Any) -> None:
        return None

    t2 = time.perf_counter_ns()
    for i in range(n):
        j = i & 4095
        noop(
            t,
            t + 1_000,
            t + 900_000,
            202,
            None,
            60,
            120,
            names[j],
            methods[j],
            usr[j],
            "load",
            task_ids[i],
        )
    t3 = time.perf_counter_ns()
    f0 = time.perf_counter_ns()
    frame = rec.frame()
    f1 = time.perf_counter_ns()
    size = frame.estimated_size()
    # estimated_size() leaves out the 16-byte views of String columns (Polars 2.1); the Arrow
    # export with the newest compat level keeps the in-memory layout (string_view), so its nbytes
    # is what the frame really holds (checked against the RSS growth: within ~3%).
    try:
        import polars as pl

        arrow = frame.to_arrow(compat_level=pl.CompatLevel.newest())
        arrow_bytes: float | None = arrow.nbytes / n
        arrow_tid: float | None = arrow.column("task_id").nbytes / n
    except Exception:  # noqa: BLE001 - pyarrow missing or an API change: leave it out
        arrow_bytes = arrow_tid = None
    tid_share = sum(1 for x in task_ids if x is not None) / n
    per_col = {c: frame[c].estimated_size() / n for c in frame.columns}
    return {
        "n": n,
        "rows": frame.height,
        "task_id_share": tid_share,
        "bytes_per_event": size / n,
        "bytes_per_event_without_task_id": frame.drop("task_id").estimated_size() / n,
        "arrow_bytes_per_event": arrow_bytes,
        "arrow_task_id_bytes_per_event": arrow_tid,
        "bytes_per_column": per_col,
        "record_us": (t1 - t0) / n / 1e3,
        "loop_and_call_overhead_us": (t3 - t2) / n / 1e3,
        "final_frame_ms": (f1 - f0) / 1e6,
    }


# --- 3b. truth: the fast client and the aiohttp path see the same latency ----------------------


def run_truth(args: dict[str, Any]) -> dict[str, Any]:
    """Both HTTP clients, interleaved, against the reference target with a fixed 20 ms delay.

    Two modes: ``open`` (the same arrival schedule for both clients, ``rate`` req/s: the server
    sees the same traffic, so a difference is the clients' measurement) and ``closed``
    (``concurrency`` VUs: a faster client also changes the arrival pattern the server queues).
    The target runs in its own process pinned to ``server_core``; this process (the generator)
    is pinned by the caller. Returns latency quantiles per mode and client, and per round.
    """
    import polars as pl

    import taskforge_perf as tfp

    rounds, duration = args.get("rounds", 3), args.get("duration", 5.0)
    conc, rate = args.get("concurrency", 20), args.get("rate", 400)
    quantiles = (0.5, 0.9, 0.99)
    modes = ("open", "closed")

    def figures(load: pl.DataFrame) -> dict[str, Any]:
        return {
            "rows": load.height,
            "errors": load["error"].drop_nulls().len(),
            **{f"p{int(p * 100)}": load["ms"].quantile(p) for p in quantiles},
            "mean": load["ms"].mean(),
        }

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"rounds": [], "modes": {}, "rate": rate, "concurrency": conc}
        frames: dict[tuple[str, str], list[pl.DataFrame]] = {}
        async with tfp.ReferenceTarget(latency="*=20ms", hash_iterations=1000, seed=1) as target:
            try:
                os.sched_setaffinity(target.pid, {int(args.get("server_core", 1))})
            except OSError:
                pass
            for i in range(rounds):
                for mode in modes:
                    for client in ("aiohttp", "fast"):
                        pool = tfp.UserPool(count=10, email_prefix=f"truth{client}")
                        tester = tfp.LoadTester(
                            target, pool, tfp.RequestMix.taskforge(), seed=i, http_client=client
                        )
                        kw: dict[str, Any] = {"rate": rate} if mode == "open" else {"concurrency": conc}
                        run = await tester.run(duration=duration, **kw)
                        load = run.load_events().with_columns(
                            ((pl.col("t_end") - pl.col("t_start")) / 1e6).alias("ms")
                        )
                        frames.setdefault((mode, client), []).append(load)
                        out["rounds"].append({"round": i, "mode": mode, "client": client, **figures(load)})
        for (mode, client), fs in frames.items():
            all_ = pl.concat(fs)
            per_ep = (
                all_.group_by(pl.col("endpoint").cast(pl.String))
                .agg(pl.col("ms").median().alias("p50"))
                .sort("endpoint")
            )
            out["modes"].setdefault(mode, {})[client] = {
                **figures(all_),
                "per_endpoint_p50": dict(per_ep.iter_rows()),
            }
        return out

    loop = new_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


RUNNERS = {"engine": run_engine, "bare": run_bare, "recorder": run_recorder, "truth": run_truth}


def main() -> None:
    kind, raw = sys.argv[1], sys.argv[2]
    args = json.loads(raw)
    out = RUNNERS[kind](args)
    out["pid"] = os.getpid()
    out["affinity"] = sorted(os.sched_getaffinity(0))
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
