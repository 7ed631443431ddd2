"""The entry point of one shard in a worker (a spawned process or a Dask worker thread).

``shard_main`` runs the shard's load on its own event loop (uvloop when installed), in the calling
thread, and reports to the parent through its channel: "ready", a Snapshot each monitor interval,
then "done" with the shard's meta (or "failed" with the error). Its rows are Parquet parts in
``parts`` (worker id in the ``worker`` column and in the file names); with ``return_rows`` they are
also returned as Arrow IPC bytes (Dask workers that do not share the parent's folder).
"""

from __future__ import annotations

import asyncio
import io
import signal
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from taskforge_perf.engine.load import run_load
from taskforge_perf.engine.shard import Channel, Shard, ShardLink
from taskforge_perf.engine.sync import new_event_loop
from taskforge_perf.plan import StressPlan
from taskforge_perf.store import write_part

if TYPE_CHECKING:
    from taskforge_perf.engine.tester import LoadTester


def shard_main(
    tester: LoadTester,
    shard: Shard,
    wall_start_ns: int,
    parts: Path,
    plan: StressPlan,
    name: str,
    wait_for_tasks: float,
    channel: Channel,
    return_rows: bool = False,
) -> dict[str, bytes | None] | None:
    """Run one shard to its end; report through ``channel``. Never raises (a failure is reported)."""
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C in a terminal reaches the whole process group: the parent decides and says "stop".
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    k = shard.index
    link = ShardLink(shard, channel, wall_start_ns)
    tester._shard, tester._link, tester._parts_dir = shard, link, parts
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(run_load(tester, plan, name, (), wait_for_tasks, None))
    except asyncio.CancelledError:
        pass  # stopped by the parent: the rows so far are kept
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, the other shards go on
        _flush(tester)  # the rows recorded before the failure are kept
        link.send(("failed", k, f"{type(exc).__name__}: {exc}"))
        link.close()
        return None
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    try:
        meta, health, target_metrics, recorder, ws_recorder = tester._shard_result
        recorder.flush()
        ws_recorder.flush()
        health = health.with_columns(pl.lit(k, pl.Int32).alias("worker"))
        write_part(health, parts / f"health-w{k}.parquet")
        if target_metrics is not None and target_metrics.height:
            write_part(target_metrics, parts / f"target_metrics-w{k}.parquet")
        meta["host"] = socket.gethostname()
        out = _rows_as_ipc(parts, k) if return_rows else None
    except BaseException as exc:  # noqa: BLE001
        link.send(("failed", k, f"{type(exc).__name__}: {exc}"))
        link.close()
        return None
    link.send(("done", k, meta))
    link.close()
    return out


def _rows_as_ipc(parts: Path, k: int) -> dict[str, bytes | None]:
    """The shard's rows (every part it wrote) as Arrow IPC bytes per frame."""
    out: dict[str, bytes | None] = {}
    for frame in ("events", "ws_events", "health", "target_metrics"):
        files = sorted(parts.glob(f"{frame}-w{k}*.parquet"))
        if not files:
            out[frame] = None
            continue
        buf = io.BytesIO()
        pl.concat([pl.read_parquet(f) for f in files], how="vertical").write_ipc(buf)
        out[frame] = buf.getvalue()
    return out


def _flush(tester: LoadTester) -> None:
    """Write the failed shard's buffered rows as parts (best effort)."""
    try:
        _, _, _, recorder, ws_recorder = tester._shard_result
        recorder.flush()
        ws_recorder.flush()
    except Exception:  # noqa: BLE001 - nothing more to save
        pass
