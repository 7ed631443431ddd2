"""WebSocket truth (issue 11 item 5): lost subscriptions, isolation and unfinished tasks, measured.

Starts a ``real_quirks`` reference target on 127.0.0.1 and runs the default TaskForge mix in the
open model (``--rate`` req/s for ``--duration`` s) with ``--sockets`` WebSocket connections over
``--users`` users, then prints:

- lost: the tester's ``lost_subscription`` rows against the target's ground truth
  (``taskforge_ws_frames_lost_total``: client frames read before its message handler attached);
  a lost row with no lost frame on the target is a false positive;
- isolation: messages whose task another user created (from the frames) against the run's
  ``isolation`` rows;
- tasks: created, and those with no completed/failed message by the end (with ``--wait``,
  ``wait_for_tasks`` seconds after the load).

    .venv/bin/python benchmarks/bench_ws_truth.py --duration 30
    .venv/bin/python benchmarks/bench_ws_truth.py --duration 30 --keep-up
    .venv/bin/python benchmarks/bench_ws_truth.py --duration 10 --keep-up --wait 30
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

import taskforge_perf as tfp  # noqa: E402


async def main(a: argparse.Namespace) -> None:
    knobs: dict = {"real_quirks": not a.plain, "hash_iterations": 1000, "seed": 7}
    if a.outbox is not None:
        knobs["outbox_interval"] = a.outbox
    knobs["outbox_first_delay"] = a.first_delay  # the real 60 s would leave a short run idle
    if a.keep_up:  # the outbox dispatches everything each pass and workers keep up
        knobs.update(outbox_batch=2000, worker_concurrency=64)
    async with tfp.ReferenceTarget(**knobs) as target:
        kw = {}
        if a.wait and "wait_for_tasks" in inspect.signature(tfp.LoadTester.run).parameters:
            kw["wait_for_tasks"] = a.wait
        opts = {}
        if a.cross:
            opts["sample_from"] = "all"
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=a.users, email_prefix="truth"),
            websockets=a.sockets,
            seed=7,
            live=False,
            ws_options=tfp.WsOptions(**opts) if opts else None,
        )
        run = await tester.run(duration=a.duration, rate=a.rate, **kw)
        m = await target.ametrics()
    ws, ev = run.ws_events, run.load_events()
    lost_frames = int(m.get("taskforge_ws_frames_lost_total", {}).get((), -1))
    lost = ws.filter(pl.col("error").cast(pl.String) == "lost_subscription").height
    resub = ws.filter(pl.col("kind").cast(pl.String) == "resubscribe").height
    owners = ev.filter(pl.col("task_id").is_not_null()).select(
        "task_id", owner=pl.col("user").cast(pl.String)
    )
    msgs = ws.filter(pl.col("kind").cast(pl.String) == "message", pl.col("task_id").is_not_null())
    msgs = msgs.join(owners, on="task_id", how="inner")
    foreign = msgs.filter(pl.col("user").cast(pl.String) != pl.col("owner")).height
    iso = ws.filter(pl.col("kind").cast(pl.String) == "isolation")
    summary = run.ws_summary().to_dicts()[0]
    done = set(
        ws.filter(
            pl.col("kind").cast(pl.String) == "message",
            pl.col("status").cast(pl.String).is_in(["completed", "failed"]),
        )["task_id"]
    )
    created = owners.height
    unfinished = created - len(done & set(owners["task_id"]))
    wall = (run.meta["wall_end_ns"] - run.meta["wall_start_ns"]) / 1e9
    print(f"run {run.duration_s:.1f} s load; wall {wall:.1f} s")
    print(f"lost: {lost} lost_subscription rows, {resub} resubscribes; target lost frames: {lost_frames}")
    print(
        f"isolation: {foreign} of {msgs.height} messages were other users' tasks; "
        f"{iso.height} isolation rows; summary: "
        + ", ".join(f"{k}={v}" for k, v in summary.items() if k.startswith("isolation"))
    )
    print(f"tasks: {created} created, {unfinished} with no final message at the end")
    print(run.task_latency())


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--sockets", type=int, default=50)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--outbox", type=float, default=None, help="outbox interval (s); default 5 s")
    p.add_argument("--first-delay", type=float, default=5.0, help="first outbox pass (s); real: 60")
    p.add_argument("--keep-up", action="store_true", help="outbox_batch=2000, worker_concurrency=64")
    p.add_argument("--wait", type=float, default=0.0, help="wait_for_tasks (s)")
    p.add_argument("--cross", action="store_true", help="WsOptions(sample_from='all')")
    p.add_argument("--plain", action="store_true", help="without real_quirks")
    asyncio.run(main(p.parse_args()))
