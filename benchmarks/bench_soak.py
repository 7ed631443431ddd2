"""Soak: does the tester's memory stay flat over a long run? (issue 12: "Nothing lost")

One LoadTester process runs the default TaskForge mix, open model at ``--rate`` req/s (default
300) with ``--websockets`` status-gateway sockets (default 50), for ``--duration`` seconds (default
600 = 10 minutes) against a reference target it starts (a subprocess on 127.0.0.1). Every
``--sample`` seconds it prints this process's RSS and the rows recorded so far. At the end:

- growth after warm-up: RSS at the end of the load minus RSS at the end of ``--warmup`` (default
  60 s, or a quarter of the run when shorter); goal (issue 12): at most +50 MB over 10 minutes;
- slope: a least-squares line through the samples of the load's second half, in MB/min, and the
  bytes held per recorded row it amounts to (slope / row rate);
- the end: RSS after the run returns (frames compacted, read back lazily), after ``run.save()``
  to another folder, after ``run.events`` and ``run.ws_events`` are collected, and ``--settle``
  seconds after the Run is dropped.

``--mode stream`` (default) is the default run: rows streamed to the run folder; ``--mode memory``
is ``save_dir=None`` (every row kept in memory), the behaviour before streaming.

    .venv/bin/python benchmarks/bench_soak.py                       # 10 min, appends to RESULTS.md
    .venv/bin/python benchmarks/bench_soak.py --duration 180
    .venv/bin/python benchmarks/bench_soak.py --duration 30 --no-write --json   # the suite's check
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import taskforge_perf as tfp  # noqa: E402
from taskforge_perf.engine.sync import new_event_loop  # noqa: E402
from taskforge_perf.plan import Phase, StressPlan  # noqa: E402

MB = 1024 * 1024


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MB
    return 0.0


def slope_per_s(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


async def soak(args: argparse.Namespace, store: Path) -> dict:
    async with tfp.ReferenceTarget(
        seed=1, worker_concurrency=32, hash_iterations=args.hash_iterations, startup_timeout=30
    ) as target:
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=args.users, email_prefix="soak"),
            tfp.RequestMix.taskforge(),
            websockets=args.websockets,
            seed=1,
            live=False,
            save_dir=store if args.mode == "stream" else None,
        )
        plan = StressPlan([Phase("soak", args.duration, rate=args.rate)])
        run_task = asyncio.ensure_future(tester.run(plan, name="soak"))
        # The load starts once the users are set up: the first HTTP row of phase "soak".
        while tester.counters.requests <= args.users and not run_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        t0 = time.monotonic()
        samples: list[dict] = []
        while not run_task.done():
            c = tester.counters
            s = {
                "t": time.monotonic() - t0,
                "rss_mb": rss_mb(),
                "http_rows": c.requests,
                "ws_msgs": c.ws_messages,
                "ws_open": c.ws_open,
            }
            samples.append(s)
            if not args.json:
                print(
                    f"{s['t']:7.1f} s  RSS {s['rss_mb']:7.1f} MB  {s['http_rows']:>9,} requests  "
                    f"{s['ws_msgs']:>9,} ws messages  {s['ws_open']} sockets open",
                    flush=True,
                )
            try:
                await asyncio.wait_for(asyncio.shield(run_task), args.sample)
            except TimeoutError:
                pass
        rss_load_end = samples[-1]["rss_mb"]
        run = run_task.result()
        del run_task
        tester.last_run = None
        gc.collect()
        rss_after_run = rss_mb()  # the frames compacted on disk, not read yet
        copy = run.save(store / "copy-of-soak") if args.mode == "stream" else run.save(store / "soak")
        rss_saved = rss_mb()  # a streamed run is copied Parquet to Parquet
        height, ws_height = run.events.height, run.ws_events.height
        rss_collected = rss_mb()  # both frames in memory, as an analysis would have them
        stopped = run.meta["stopped"]
        del run
        gc.collect()
        await asyncio.sleep(args.settle)  # jemalloc (Polars) returns freed pages after ~10 s
        rss_settled = rss_mb()
    warm = min(args.warmup, args.duration / 4)
    load = [s for s in samples if s["t"] <= args.duration]
    after_warm = [s for s in load if s["t"] >= warm]
    second_half = [(s["t"], s["rss_mb"]) for s in load if s["t"] >= args.duration / 2]
    slope = slope_per_s(second_half)  # MB/s
    rows_per_s = slope_per_s([(s["t"], s["http_rows"] + s["ws_msgs"]) for s in load if s["t"] >= warm])
    return {
        "mode": args.mode,
        "duration_s": args.duration,
        "rate": args.rate,
        "websockets": args.websockets,
        "samples": [{k: round(v, 1) if isinstance(v, float) else v for k, v in s.items()} for s in samples],
        "warmup_s": warm,
        "rss_warm_mb": after_warm[0]["rss_mb"] if after_warm else float("nan"),
        "rss_load_end_mb": rss_load_end,
        "rss_max_mb": max(s["rss_mb"] for s in samples),
        "growth_after_warmup_mb": (rss_load_end - after_warm[0]["rss_mb"]) if after_warm else float("nan"),
        "slope_mb_per_min": slope * 60,
        "rows_per_s": rows_per_s,
        "bytes_per_row": slope * MB / rows_per_s if rows_per_s else float("nan"),
        "rss_after_run_mb": rss_after_run,
        "rss_collected_mb": rss_collected,
        "rss_saved_mb": rss_saved,
        "rss_settled_mb": rss_settled,
        "settle_s": args.settle,
        "http_rows": height,
        "ws_rows": ws_height,
        "stopped": stopped,
        "saved_to": str(copy),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(r: dict) -> str:
    """The RESULTS.md section: RSS every ~30 s (every ~5 s for short runs) and the figures."""
    step = 30.0 if r["duration_s"] >= 180 else 5.0
    shown, nxt = [], 0.0
    for s in r["samples"]:
        if s["t"] >= nxt:
            shown.append(s)
            nxt = s["t"] + step - 0.5
    rows = "\n".join(
        f"| {s['t']:.0f} | {s['rss_mb']:.1f} | {s['http_rows']:,} | {s['ws_msgs']:,} |" for s in shown
    )
    full = "" if r["duration_s"] >= 600 else f" (**{r['duration_s'] / 60:.1f} min, not the full 10**)"
    built = (
        "frames compacted on disk, not read yet"
        if r["mode"] == "stream"
        else "frames built in memory: save_dir=None, the behaviour before streaming"
    )
    machine = f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    cmd = f"benchmarks/bench_soak.py --duration {r['duration_s']:.0f} --mode {r['mode']}"
    return "\n".join(
        [
            "",
            f"## Soak: tester RSS over a long run ({datetime.date.today()}, {machine})",
            "",
            f"`{cmd}`{full}: TaskForge mix, open model {r['rate']:.0f} req/s, {r['websockets']} "
            "sockets, reference target in a subprocess on the same (shared, noisy) machine.",
            "",
            "| t (s) | RSS (MB) | requests | ws messages |",
            "|---|---|---|---|",
            rows,
            "",
            f"- growth after warm-up ({r['warmup_s']:.0f} s): **{r['growth_after_warmup_mb']:+.1f} MB** "
            f"({r['rss_warm_mb']:.1f} -> {r['rss_load_end_mb']:.1f} MB; max {r['rss_max_mb']:.1f} MB); "
            "goal: at most +50 MB over 10 minutes",
            f"- slope over the second half: **{r['slope_mb_per_min']:+.2f} MB/min** = "
            f"{r['bytes_per_row']:.1f} B per recorded row ({r['rows_per_s']:.0f} rows/s); before "
            "streaming: ~188 B/row, 79 -> 149 MB over 5 min",
            f"- end of run: {r['rss_after_run_mb']:.1f} MB after the run returned ({built}), "
            f"{r['rss_saved_mb']:.1f} MB after `run.save()` to another folder, "
            f"{r['rss_collected_mb']:.1f} MB with `run.events` and `run.ws_events` collected "
            f"({r['http_rows']:,} HTTP rows, {r['ws_rows']:,} ws rows), {r['rss_settled_mb']:.1f} MB "
            f"{r['settle_s']:.0f} s after the Run was dropped; stopped: {r['stopped']}",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    p.add_argument("--rate", type=float, default=300.0, help="requests per second (default 300)")
    p.add_argument("--websockets", type=int, default=50, help="status-gateway sockets (default 50)")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the growth figure")
    p.add_argument("--mode", choices=("stream", "memory"), default="stream")
    p.add_argument("--hash-iterations", type=int, default=1000, help="the target's password-hash cost")
    p.add_argument("--settle", type=float, default=15.0, help="seconds before the last RSS reading")
    p.add_argument(
        "--ws-task-cap",
        type=int,
        default=None,
        help="created tasks the WebSocket driver remembers (default: the engine's, 50,000); the "
        "suite's 30 s check lowers it so that bounded state, still filling in 30 s, does not hide "
        "what the check is about: rows held in memory",
    )
    p.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    p.add_argument("--json", action="store_true", help="print one JSON object (no progress lines)")
    args = p.parse_args(argv)
    if args.ws_task_cap is not None:
        from taskforge_perf.engine import ws_subs

        ws_subs._TASKS_MAX = args.ws_task_cap
    with tempfile.TemporaryDirectory(prefix="tfp-soak-") as tmp:
        loop = new_event_loop()
        try:
            result = loop.run_until_complete(soak(args, Path(tmp)))
        finally:
            loop.close()
    if args.json:
        print(json.dumps(result))
    else:
        print(markdown(result))
    if not args.no_write:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
