"""WebSocket scale: one tester process holds N subscribed connections against the reference target.

For each N (default 2,000, 5,000, 10,000) a fresh reference target is started and a LoadTester
with ``websockets=N`` runs an open-model HTTP load of ``--rate`` task creations per second (each
task subscribed at once on a connection of its creator) while every connection subscribes to a
recent task every ``--interval`` s. Measured in this process:

- open time: from the start of the load until N sockets are open;
- client memory per connection: (RSS with N open - RSS after user setup) / N (recorder buffers of
  the rows recorded meanwhile included);
- event-loop lag: a task sleeping 10 ms in a loop records its overshoot during a ``--hold`` s window
  while messages flow; p50 / p99 / max;
- messages received per second during that window; cancellation: time until every socket is closed.

    .venv/bin/python benchmarks/bench_ws.py                  # 2k, 5k, 10k; appends to RESULTS.md
    .venv/bin/python benchmarks/bench_ws.py --sizes 1000 --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# BENCH_TREE=/path/to/another/checkout measures that tree's engine with this script (bisecting).
sys.path.insert(0, os.environ.get("BENCH_TREE") or str(ROOT))

import taskforge_perf as tfp  # noqa: E402
from taskforge_perf.engine.sync import new_event_loop  # noqa: E402
from taskforge_perf.mix import task_endpoint  # noqa: E402
from taskforge_perf.plan import Phase, StressPlan  # noqa: E402


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the target child
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _sched_wait_ns(fd: int | None) -> int:
    """Nanoseconds this thread waited for a CPU (runnable, not running), 0 when unknown."""
    return int(os.pread(fd, 128, 0).split()[1]) if fd is not None else 0


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def lag_probe(samples: list[float], own: list[float], stop: asyncio.Event) -> None:
    """Overshoot of a 10 ms sleep (ms) into ``samples``; the same minus the time the loop's thread
    waited for a CPU meanwhile (other processes: the machine's doing) into ``own``."""
    try:
        fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        fd = None
    # perf_counter, not loop.time(): uvloop's loop clock has millisecond resolution.
    while not stop.is_set():
        w0 = _sched_wait_ns(fd)
        t0 = time.perf_counter()
        await asyncio.sleep(0.010)
        over = (time.perf_counter() - t0 - 0.010) * 1e3
        samples.append(over)
        own.append(max(0.0, over - (_sched_wait_ns(fd) - w0) / 1e6))
    if fd is not None:
        os.close(fd)


class GcPauses:
    """Collector pauses (gc.callbacks) while active: count and ms per generation, the longest."""

    def __init__(self) -> None:
        self.t0 = self.c0 = 0.0
        self.by_gen: dict[int, list[float]] = {0: [], 1: [], 2: []}  # thread CPU ms per collection

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.c0 = time.thread_time()
        else:
            self.by_gen[info["generation"]].append((time.thread_time() - self.c0) * 1e3)

    def summary(self) -> str:
        parts = []
        for g, xs in self.by_gen.items():
            if xs:
                parts.append(f"gen{g} {len(xs)}x max {max(xs):.1f} ms CPU")
        return ", ".join(parts) or "none"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return xs[k]


#: Connections started per 20 ms while opening, and the most handshakes in flight (WsOptions.batch_size):
#: 500 (before 2026-11-30 14:20) let the tester's loop stall for 100s of ms while opening.
BATCH = 100


async def open_on_target(target: Any) -> int | None:
    """The target's count of open sockets; None when its /metrics does not answer in time (a
    target process starved of CPU on a shared machine)."""
    try:
        return int((await target.ametrics())["taskforge_ws_connections"][()])
    except (OSError, TimeoutError, KeyError):
        return None


async def one(
    n: int, users: int, rate: float, interval: float, hold: float, open_timeout: float, batch: int = BATCH
) -> dict:
    async with tfp.ReferenceTarget(hash_iterations=1000, leak=False, seed=1, startup_timeout=30) as target:
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
            # The tester on core 0, the target on core 1: the loop lag measured is the tester's own.
            os.sched_setaffinity(0, {0})
            for tid in os.listdir(f"/proc/{target.pid}/task"):
                os.sched_setaffinity(int(tid), {1})
        pool = tfp.UserPool(count=users, email_prefix=f"wsbench{n}-", signup_concurrency=50)
        base: dict[str, int] = {}

        def after_setup(done: int, total: int) -> None:
            if done == total:
                base["rss"] = rss_bytes()

        mix = tfp.RequestMix([task_endpoint("generate-pdf"), task_endpoint("resize-image")])
        opts = tfp.WsOptions(
            batch_size=batch,
            batch_pause=0.02,
            subscribe_interval=interval,
            subscribe_sample=1.0,
            resubscribe_after=5.0,
        )
        tester = tfp.LoadTester(
            target, pool, mix, websockets=n, ws_options=opts, seed=1, setup_progress=after_setup
        )
        plan = StressPlan([Phase("hold", open_timeout + hold + 60, rate=rate)])
        run_task = asyncio.ensure_future(tester.run(plan, name=f"bench-ws-{n}"))
        deadline = time.monotonic() + 120
        while "rss" not in base or tester.counters.ws_open == 0:
            if run_task.done() or time.monotonic() > deadline:
                raise RuntimeError(f"run ended or setup too slow: {run_task}")
            await asyncio.sleep(0.005)
        c = tester.counters  # the run's own counters (run() replaces them)
        t_open0 = time.monotonic()
        deadline = t_open0 + open_timeout
        while c.ws_open < n and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the counter it measures
            await asyncio.sleep(0.01)
        open_s = time.monotonic() - t_open0
        opened = c.ws_open
        await asyncio.sleep(min(interval, 2.0))  # every connection subscribed at least once
        rss_open = rss_bytes()
        samples: list[float] = []
        own: list[float] = []
        stop = asyncio.Event()
        m0 = c.ws_messages
        gcp = GcPauses()
        gc.callbacks.append(gcp)
        cpu0, tcpu0 = _cpu_s(os.getpid()), _cpu_s(target.pid)
        probe = asyncio.ensure_future(lag_probe(samples, own, stop))
        t0 = time.monotonic()
        hold_ns = [tester._driver.clock.now()]  # the run's clock: rows are stamped with it
        await asyncio.sleep(hold)
        stop.set()
        hold_ns.append(tester._driver.clock.now())
        await probe
        msgs = c.ws_messages - m0
        span = time.monotonic() - t0
        cpu_share = (_cpu_s(os.getpid()) - cpu0) / span
        target_share = (_cpu_s(target.pid) - tcpu0) / span
        gc.callbacks.remove(gcp)
        rss_hold = rss_bytes()
        server_open = await open_on_target(target)
        t_c = time.monotonic()
        run_task.cancel()
        try:
            await run_task
        except asyncio.CancelledError:
            pass
        close_s = time.monotonic() - t_c
        after = await open_on_target(target)
        run = tester.last_run
        meta_ws = run.meta.get("ws") or {} if run is not None else {}
    return {
        "n": n,
        "users": users,
        "opened": opened,
        "server_open": server_open,
        "open_s": open_s,
        "rss_per_conn_kb": (rss_open - base["rss"]) / max(opened, 1) / 1024,
        "rss_hold_per_conn_kb": (rss_hold - base["rss"]) / max(opened, 1) / 1024,
        "lag_p50_ms": statistics.median(samples) if samples else float("nan"),
        "lag_p99_ms": pct(samples, 0.99),
        "lag_max_ms": max(samples) if samples else float("nan"),
        "own_lag_p99_ms": pct(own, 0.99),
        "own_lag_max_ms": max(own) if own else float("nan"),
        "gc": gcp.summary(),
        "tester_cpu": cpu_share,
        "target_cpu": target_share,
        "loadavg": os.getloadavg()[0],
        "msgs_per_s": msgs / span,
        "close_s": close_s,
        "server_open_after": after,
        "connect_errors": meta_ws.get("connect_errors"),
        "rows": run.ws_events.height if run is not None else 0,
        **(lateness_split(run.events) if run is not None else {}),
        "late_p99_hold_ms": lateness_within(run.events, *hold_ns) if run is not None else None,
        **(diagnose(run) if run is not None else {}),
    }


def lateness_within(events: Any, t0_ns: int, t1_ns: int) -> float | None:
    """p99 start lateness (ms) of the HTTP rows intended within the hold window (all sockets open,
    none opening: the opening's handshakes are the tester's heaviest work)."""
    import polars as pl

    ev = events.filter(
        pl.col("t_intended").is_between(t0_ns, t1_ns) & ~pl.col("phase").is_in(["setup", "teardown"])
    )
    if ev.height == 0:
        return None
    return float(((ev["t_start"] - ev["t_intended"]) / 1e6).quantile(0.99))


def diagnose(run: Any) -> dict[str, Any]:
    """What the lateness and the connect errors were made of (printed, not tabled)."""
    import polars as pl

    ws = run.ws_events
    kinds = ws.filter(pl.col("kind") == "connect_error").group_by("error").len().sort("len", descending=True)
    ev = run.events.filter(~pl.col("phase").is_in(["setup", "teardown"]))
    late = ev.filter(pl.col("t_start") - pl.col("t_intended") > 50_000_000)
    return {
        "connect_error_kinds": dict(
            zip(kinds["error"].cast(pl.String).to_list(), kinds["len"].to_list(), strict=True)
        ),
        "late_over_50ms": late.height,
        "late_by_endpoint": late.group_by("endpoint").len().rows(),
        # (second of the load, rows, p99 lateness ms) per 2 s: does lateness follow the opening?
        "late_by_2s": ev.with_columns(
            ((pl.col("t_intended") - ev["t_intended"].min()) // 2_000_000_000 * 2).alias("s"),
            ((pl.col("t_start") - pl.col("t_intended")) / 1e6).alias("ms"),
        )
        .group_by("s")
        .agg(pl.len(), pl.col("ms").quantile(0.99).round(1))
        .sort("s")
        .rows(),
        "load_rows": ev.height,
        "auth_meta": {k: run.meta.get(k) for k in ("auth", "preopen") if k in run.meta},
        "counters": {
            k: v
            for k, v in (run.meta.get("counters") or {}).items()
            if k in ("reauths", "logins", "refreshes", "auth_failures")
        },
    }


def lateness_split(events: Any) -> dict[str, float | None]:
    """p99 start lateness (ms) of the open model's HTTP rows: the whole run, its first second
    and the steady state after it (issue 19 asks for both)."""
    import polars as pl

    load = events.filter((pl.col("phase") != "setup") & (pl.col("phase") != "teardown"))
    load = load.filter(pl.col("error").is_null() | (pl.col("error").cast(pl.String) != "dropped"))
    if load.height == 0:
        return {"late_p99_ms": None, "late_p99_first_s_ms": None, "late_p99_steady_ms": None}
    ms = ((pl.col("t_start") - pl.col("t_intended")) / 1e6).alias("ms")
    t0 = load["t_intended"].min()
    first = load.filter(pl.col("t_intended") < t0 + 1_000_000_000).select(ms)["ms"]
    rest = load.filter(pl.col("t_intended") >= t0 + 1_000_000_000).select(ms)["ms"]
    return {
        "late_p99_ms": load.select(ms)["ms"].quantile(0.99),
        "late_p99_first_s_ms": first.quantile(0.99) if first.len() else None,
        "late_p99_steady_ms": rest.quantile(0.99) if rest.len() else None,
    }


def _n(x: int | None) -> str:
    return "?" if x is None else f"{x:,}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(results: list[dict]) -> str:
    head = (
        "| N | users | opened | open time | client KB/conn (open / after hold) | loop lag p50 / p99 / max "
        "| own lag p99 / max | GC pauses (hold) | tester / target CPU | msgs/s | close all | connect errors "
        "| HTTP start lateness p99 whole / first s / steady / hold | load avg |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in results:
        lines.append(
            f"| {r['n']:,} | {r['users']} | {r['opened']:,} (target {_n(r['server_open'])}) "
            f"| {r['open_s']:.1f} s "
            f"| {r['rss_per_conn_kb']:.1f} / {r['rss_hold_per_conn_kb']:.1f} "
            f"| {r['lag_p50_ms']:.2f} / {r['lag_p99_ms']:.2f} / {r['lag_max_ms']:.1f} ms "
            f"| {r['own_lag_p99_ms']:.2f} / {r['own_lag_max_ms']:.1f} ms | {r['gc']} "
            f"| {r['tester_cpu']:.0%} / {r['target_cpu']:.0%} "
            f"| {r['msgs_per_s']:,.0f} | {r['close_s']:.1f} s (target left {_n(r['server_open_after'])}) "
            f"| {r['connect_errors']} | {_ms(r.get('late_p99_ms'))} / {_ms(r.get('late_p99_first_s_ms'))} "
            f"/ {_ms(r.get('late_p99_steady_ms'))} / {_ms(r.get('late_p99_hold_ms'))} ms "
            f"| {r['loadavg']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    ap.add_argument("--users", type=int, default=500, help="users (connections are spread round-robin)")
    ap.add_argument("--rate", type=float, default=100.0, help="tasks created per second over HTTP")
    ap.add_argument("--interval", type=float, default=5.0, help="each connection subscribes every N s")
    ap.add_argument("--hold", type=float, default=10.0, help="seconds of lag measurement with all open")
    ap.add_argument("--open-timeout", type=float, default=90.0)
    ap.add_argument("--batch", type=int, default=BATCH, help="WsOptions.batch_size while opening")
    ap.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the tester's event loop (run_sync uses uvloop; a notebook's await, asyncio)",
    )
    ap.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    ap.add_argument("--child-out", help=argparse.SUPPRESS)  # one size in this process, JSON result here
    args = ap.parse_args()
    nofile = raise_nofile()
    print(f"RLIMIT_NOFILE={nofile}; nproc={os.cpu_count()}; cpu={cpu_model()}", flush=True)
    results = []
    if args.child_out:
        # The tester's own loop as run_sync would make it (uvloop when installed).
        factory = new_event_loop if args.loop == "uvloop" else asyncio.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            r = runner.run(
                one(
                    args.sizes[0],
                    args.users,
                    args.rate,
                    args.interval,
                    args.hold,
                    args.open_timeout,
                    args.batch,
                )
            )
        Path(args.child_out).write_text(json.dumps(r, default=str))
        return 0
    for n in args.sizes:
        if n + 500 > nofile:  # the target child has its own (inherited) limit
            print(f"skipping N={n}: needs ~{n + 500} file descriptors, limit {nofile}")
            continue
        # Each size in a fresh process: memory a previous size freed stays in this one's RSS and
        # made the next KB/conn meaningless (negative).
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.json"
            argv = [sys.executable, __file__, "--sizes", str(n), "--child-out", str(out), "--no-write"]
            argv += ["--users", str(args.users), "--rate", repr(args.rate), "--interval", repr(args.interval)]
            argv += ["--hold", repr(args.hold), "--open-timeout", repr(args.open_timeout)]
            argv += ["--batch", str(args.batch), "--loop", args.loop]
            subprocess.run(argv, check=True)
            r = json.loads(out.read_text())
        print(r, flush=True)
        results.append(r)
    text = table(results)
    print(text)
    if not args.no_write and results:
        section = (
            f"\n## WebSocket scale ({datetime.date.today().isoformat()})\n\n"
            f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
            f"RLIMIT_NOFILE {nofile}. `benchmarks/bench_ws.py --users {args.users} --rate {args.rate:g} "
            f"--interval {args.interval:g} --hold {args.hold:g} --loop {args.loop} --batch {args.batch}`: "
            "one tester process pinned to core 0, the reference "
            "target (leak=False) as a child process pinned to core 1; every connection subscribes to "
            f"a recent task every {args.interval:g} s and each task created over HTTP is subscribed on a "
            "connection of its creator. KB/conn = (RSS with all open - RSS after user setup) / N, recorder "
            "rows included. Loop lag = overshoot of a 10 ms sleep while messages flow; own lag = the same "
            "minus "
            "the time the loop's thread waited for a CPU (schedstat: other processes); GC pauses = CPU of "
            "each collection during the hold; lateness 'hold' = HTTP rows intended during the hold window; "
            "load avg = 1-min load average after the hold (the machine is shared).\n\n" + text + "\n"
        )
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
