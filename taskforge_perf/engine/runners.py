"""Runners: one plan over N shards (local processes or Dask workers), merged into one Run.

The parent (the ``LoadTester`` the user holds) picks the common start, aggregates the shards' live
Snapshots for its listeners, watches abort-on-fail thresholds over the rows the shards stream to the
run folder's parts, relays "stop" (a breach, Ctrl-C), records failed shards, and assembles the Run.
Rows never travel through pickled frames: each shard writes Parquet parts with its worker id (or, on
a Dask cluster without a shared folder, returns them as Arrow IPC bytes at the end).
"""

from __future__ import annotations

import asyncio
import copy
import io
import multiprocessing as mp
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cloudpickle
import polars as pl

from taskforge_perf.engine.assemble import evaluate, open_run
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.hub import Hub, SocketChannel
from taskforge_perf.engine.merge import aggregate, merge_metas
from taskforge_perf.engine.monitor import Snapshot
from taskforge_perf.engine.recorder import LiveCounters
from taskforge_perf.engine.setup import folder_meta
from taskforge_perf.engine.shard import START_MARGIN_S, Shard
from taskforge_perf.engine.worker import shard_main
from taskforge_perf.errors import ConfigError, RunError
from taskforge_perf.plan import StressPlan
from taskforge_perf.results import Run, default_store
from taskforge_perf.schema import HEALTH_SCHEMA, HTTP_SCHEMA
from taskforge_perf.store import RunFolder, part_paths, write_part
from taskforge_perf.threshold_eval import ThresholdWatch
from taskforge_perf.thresholds import Threshold

if TYPE_CHECKING:
    from taskforge_perf.engine.tester import LoadTester

#: How often the parent reads new part files for abort-on-fail thresholds (parts land every ~2 s).
WATCH_EVERY_S = 0.5
#: Seconds a shard gets after its process ended to have its last message read.
EXIT_GRACE_S = 2.0


class Runner(Protocol):
    """Runs a tester's plan as shards and merges them (``ProcessRunner``, ``DaskRunner``)."""

    workers: int

    async def run(
        self,
        tester: LoadTester,
        plan: StressPlan,
        name: str,
        checks: tuple[Threshold, ...],
        wait_for_tasks: float,
        save_to: Any,
    ) -> Run: ...


def make_runner(processes: int, runner: Runner | None) -> Runner | None:
    """The runner of ``LoadTester(processes=, runner=)``: None runs in this process."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ConfigError(f"processes must be an integer >= 1 (got {processes!r}); e.g. processes=2")
    if runner is not None:
        if processes != 1:
            raise ConfigError("give processes= or runner=, not both (a runner has its own workers)")
        if not callable(getattr(runner, "run", None)):
            raise ConfigError(f"runner must be a runner such as tfp.DaskRunner(client) (got {runner!r})")
        return runner
    return ProcessRunner(processes) if processes > 1 else None


def shard_tester(tester: LoadTester, shard: Shard) -> LoadTester:
    """A copy of the tester for one shard: its users, no displays, nothing that cannot travel."""
    if tester.ssl_context not in (None, True, False):
        raise ConfigError(
            "ssl_context: an ssl.SSLContext cannot be sent to worker processes; use processes=1, "
            "or ssl_context=False / None"
        )
    if tester.metrics_port is not None:
        raise ConfigError("metrics_port is served by one process only; use processes=1 with metrics_port")
    t = copy.copy(tester)
    t.users = shard.users(tester.users)
    t.listeners, t.live, t.setup_progress, t.runner = [], False, None, None
    t.counters, t.last_run, t._folder, t._driver, t._ws_driver = LiveCounters(), None, None, None, None
    return t


class _Coordinator:
    """The parent's side of a sharded run: messages, common start, live view, thresholds, stop."""

    def __init__(self, tester: LoadTester, n: int, clock: Clock, parts: Path, checks: tuple[Threshold, ...]):
        self.tester, self.n, self.clock, self.parts = tester, n, clock, parts
        self.ready: set[int] = set()
        self.metas: dict[int, dict[str, Any]] = {}
        self.failed: dict[int, str] = {}
        self.snaps: dict[int, Snapshot] = {}
        self.load_start_ns: int | None = None
        self.stopped: str | None = None
        self.watched = [t for t in checks if t.abort_on_fail]
        self.watch = ThresholdWatch(self.watched) if self.watched else None
        self.seen: set[Path] = set()
        self.send: Any = None  # (index, message) -> None, set by the runner

    def finished(self) -> bool:
        return len(self.metas) + len(self.failed) >= self.n

    def on_message(self, msg: tuple[Any, ...]) -> None:
        kind, k = msg[0], int(msg[1])
        if kind == "ready":
            self.ready.add(k)
        elif kind == "snap":
            self.snaps[k] = msg[2]
            total = aggregate(self.snaps)
            c = self.tester.counters  # ``tester.counters`` reads the whole run while it goes
            c.requests, c.in_flight, c.errors, c.late = (
                total.requests,
                total.in_flight,
                total.errors,
                total.late,
            )
            c.tasks_created, c.ws_open, c.ws_completed = (
                total.tasks_created,
                total.ws_open,
                total.ws_completed,
            )
            self._show(total)
        elif kind == "done":
            self.metas[k] = msg[2]
        elif kind == "failed":
            self.failed.setdefault(k, str(msg[2]))
        if self.load_start_ns is None and self.ready and len(self.ready | set(self.failed)) >= self.n:
            self.load_start_ns = self.clock.now() + int(START_MARGIN_S * 1e9)
            for i in sorted(self.ready):
                self.send(i, ("start", self.load_start_ns))
            folder = self.tester._folder
            if folder is not None:
                meta = {**self.tester._folder_meta, "stopped": "running", "load_start_ns": self.load_start_ns}
                folder.write_meta(meta)

    def _show(self, snap: Snapshot) -> None:
        for listener in list(self.tester.listeners):
            try:
                listener(snap)
            except Exception:  # noqa: BLE001 - a broken display must never stop the load
                self.tester.listeners.remove(listener)

    def stop_all(self, reason: str, interrupt: bool) -> None:
        if self.stopped is None:
            self.stopped = reason
        for i in range(self.n):
            if i not in self.metas and i not in self.failed:
                self.send(i, ("stop", reason, interrupt))

    def check_thresholds(self, plan: StressPlan) -> None:
        """Read the part files written since the last check; stop every shard on a breach."""
        if self.watch is None or self.load_start_ns is None or self.stopped is not None:
            return
        new_ev = [p for p in part_paths(self.parts.parent, "events") if p not in self.seen]
        new_ws = [p for p in part_paths(self.parts.parent, "ws_events") if p not in self.seen]
        self.seen.update(new_ev + new_ws)
        if not new_ev and not new_ws:
            return
        ev = pl.concat([pl.read_parquet(p) for p in new_ev]) if new_ev else pl.DataFrame(schema=HTTP_SCHEMA)
        ws = pl.concat([pl.read_parquet(p) for p in new_ws]) if new_ws else None
        self.watch.add(ev.filter(pl.col("t_start") >= self.load_start_ns), ws)
        hit = self.watch.poll(
            elapsed_s=(self.clock.now() - self.load_start_ns) / 1e9, plan=plan, generator=None
        )
        if hit is not None:
            self.stop_all(f"aborted: {hit}", interrupt=False)

    def shards_meta(self) -> list[dict[str, Any]]:
        out = []
        for k in range(self.n):
            if k in self.metas:
                m = self.metas[k]
                out.append(
                    {
                        "worker": k,
                        "status": "ok",
                        "stopped": m.get("stopped"),
                        "requests": (m.get("counters") or {}).get("requests"),
                        "users": (m.get("users") or {}).get("ready"),
                        "host": m.get("host"),
                    }
                )
            else:
                out.append({"worker": k, "status": "failed", "error": self.failed.get(k, "no result")})
        return out


async def coordinate(
    runner: Any,
    tester: LoadTester,
    plan: StressPlan,
    name: str,
    checks: tuple[Threshold, ...],
    wait_for_tasks: float,
    save_to: Any,
) -> Run:
    """Run ``runner.workers`` shards through ``runner``'s transport and merge them into one Run."""
    n = runner.workers
    # Checked before the run folder exists: a bad option leaves nothing behind.
    jobs = [(shard_tester(tester, Shard(index=k, count=n)), Shard(index=k, count=n)) for k in range(n)]
    clock = Clock()
    temp = None
    if save_to is None and tester.save_dir is None:  # rows still go through files, then memory
        temp = Path(tempfile.mkdtemp(prefix="taskforge-perf-"))
        save_to = temp / "run"
    base = folder_meta(tester, plan, name, clock, workers=n)
    path = Path(save_to) if save_to is not None else default_store(tester.save_dir) / base["run_id"]
    folder = RunFolder.create(path, base, field="save_to" if save_to else "save_dir")
    tester._folder, tester._folder_meta = folder, base
    tester.counters = LiveCounters()
    co = _Coordinator(tester, n, clock, folder.parts, checks)
    hub = Hub(runner.host())
    try:
        transport = runner.start(jobs, hub, clock.wall_start_ns, folder.parts, plan, name, wait_for_tasks)
    except BaseException:
        hub.close()
        raise
    co.send = hub.send
    loop = asyncio.get_running_loop()
    cancelled = False
    last_watch = 0.0
    # The read in flight: an interrupt (cancellation) must not drop the messages its thread has
    # already taken off the shards' connections (a shard's "done" lost that way made its process
    # look as if it had exited without a result), so the same read is awaited again after it.
    reading: asyncio.Future[list[tuple[Any, ...]]] | None = None
    try:
        while not co.finished():
            if reading is None:
                reading = loop.run_in_executor(None, hub.recv_all, 0.1)
            try:
                msgs = await asyncio.shield(reading)
            except asyncio.CancelledError:
                cancelled = True
                co.stop_all(tester._stop_reason or "interrupted", interrupt=True)
                continue
            reading = None
            for msg in msgs:
                co.on_message(msg)
            for k, why in transport.lost(set(co.metas) | set(co.failed)).items():
                co.failed[k] = why
            if clock.seconds() - last_watch >= WATCH_EVERY_S:
                last_watch = clock.seconds()
                co.check_thresholds(plan)
    finally:
        transport.close()
        hub.close()
    for k, frames in transport.returned().items():  # Dask without a shared folder: Arrow IPC bytes
        for frame, data in frames.items():
            if data:
                write_part(pl.read_ipc(io.BytesIO(data)), folder.parts / f"{frame}-w{k}-99999.parquet")
    if not co.metas:
        tester._folder = None
        folder.write_meta({**base, "stopped": "failed", "shards": co.shards_meta()})
        errors = "; ".join(f"worker {k}: {e}" for k, e in sorted(co.failed.items()))
        if cancelled:
            raise asyncio.CancelledError
        raise RunError(f"every worker failed ({errors})")
    meta = merge_metas(
        base,
        co.metas,
        workers=n,
        load_start_ns=co.load_start_ns or 0,
        shards=co.shards_meta(),
        stopped=co.stopped,
    )
    health = _concat([*folder.parts.glob("health-w*.parquet")], HEALTH_SCHEMA)
    tm_parts = sorted(folder.parts.glob("target_metrics-w*.parquet"))
    target_metrics = pl.read_parquet(tm_parts[0]) if tm_parts else None
    for p in [*folder.parts.glob("health-w*.parquet"), *tm_parts]:
        p.unlink()
    run = open_run(folder, meta, health, target_metrics)
    tester._folder = None
    if temp is not None:  # save_dir=None: the Run in memory, the temporary folder removed
        run = Run(
            pl.read_parquet(folder.path / "events.parquet"),
            pl.read_parquet(folder.path / "ws_events.parquet"),
            meta,
            health=health,
            target_metrics=target_metrics,
        )
        shutil.rmtree(temp, ignore_errors=True)
    evaluate(run, checks, folder if temp is None else None)
    tester.last_run = run
    if cancelled:
        raise asyncio.CancelledError
    return run


def _concat(paths: list[Path], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    frames = [pl.read_parquet(p) for p in sorted(paths)]
    if not frames:
        return pl.DataFrame(schema={**schema, "worker": pl.Int32()})
    return pl.concat(frames, how="vertical_relaxed")


def _spawned(job: bytes, channel: SocketChannel) -> None:
    """The target of a spawned worker process."""
    try:
        args = pickle.loads(job)
    except Exception as exc:  # noqa: BLE001 - reported: the other shards go on
        channel.send(("failed", channel.index, f"cannot load the shard's job: {type(exc).__name__}: {exc}"))
        return
    tester, shard, wall_start_ns, parts, plan, name, wait_for_tasks = args
    shard_main(tester, shard, wall_start_ns, parts, plan, name, wait_for_tasks, channel)


class _MpTransport:
    """The spawned processes of a run (their messages go through the hub)."""

    def __init__(self, procs: list[Any]) -> None:
        self.procs = procs
        self._exited: dict[int, float] = {}

    def lost(self, reported: set[int]) -> dict[int, str]:
        """Shards whose process ended without a result (after a grace for its last message)."""
        import time

        out = {}
        for k, p in enumerate(self.procs):
            if k in reported or p.exitcode is None:
                continue
            first = self._exited.setdefault(k, time.monotonic())
            if time.monotonic() - first > EXIT_GRACE_S:
                out[k] = f"process exited with code {p.exitcode} without a result"
        return out

    def returned(self) -> dict[int, dict[str, bytes | None]]:
        return {}

    def close(self) -> None:
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)


class ProcessRunner:
    """Shards in local processes (``LoadTester(..., processes=N)``): each its own event loop.

    Processes are started with multiprocessing's "spawn" (a fresh interpreter: safe with threads
    and a running notebook kernel); a script that uses processes needs the usual
    ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, processes: int) -> None:
        self.workers = processes

    def __repr__(self) -> str:
        return f"ProcessRunner(processes={self.workers})"

    def host(self) -> str:
        """The address the shards reach the parent at."""
        return "127.0.0.1"

    def start(
        self,
        jobs: list[tuple[Any, Shard]],
        hub: Hub,
        wall_start_ns: int,
        parts: Path,
        plan: StressPlan,
        name: str,
        wait_for_tasks: float,
    ) -> _MpTransport:
        ctx = mp.get_context("spawn")
        procs = []
        for tester, shard in jobs:
            # cloudpickle: payload builders and assignment strategies are often closures.
            job = cloudpickle.dumps((tester, shard, wall_start_ns, parts, plan, name, wait_for_tasks))
            proc = ctx.Process(
                target=_spawned,
                args=(job, hub.channel(shard.index)),
                name=f"taskforge-perf-worker-{shard.index}",
                daemon=True,
            )
            proc.start()
            procs.append(proc)
        return _MpTransport(procs)

    async def run(
        self,
        tester: LoadTester,
        plan: StressPlan,
        name: str,
        checks: tuple[Threshold, ...],
        wait_for_tasks: float,
        save_to: Any,
    ) -> Run:
        return await coordinate(self, tester, plan, name, checks, wait_for_tasks, save_to)
