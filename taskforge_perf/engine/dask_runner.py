"""``DaskRunner``: the shards of a run on an existing dask.distributed cluster.

One long-lived task per worker runs its shard on its own event loop in the worker's task thread
(never an ``async def`` task, which would share the worker's own communication loop). Messages go
through ``distributed.Queue`` objects; rows are Parquet parts in the run folder when the workers
share it (``shared_folder=True``), else returned as Arrow IPC bytes when the shard ends.
Install with ``pip install taskforge-perf[distributed]``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from taskforge_perf.engine.hub import Hub, SocketChannel, reachable_host
from taskforge_perf.engine.runners import EXIT_GRACE_S, coordinate
from taskforge_perf.engine.shard import Shard
from taskforge_perf.engine.worker import shard_main
from taskforge_perf.errors import ConfigError
from taskforge_perf.plan import StressPlan
from taskforge_perf.results import Run
from taskforge_perf.thresholds import Threshold

if TYPE_CHECKING:
    from taskforge_perf.engine.tester import LoadTester


def _dask_shard(
    tester: Any,
    shard: Shard,
    wall_start_ns: int,
    parts: str | None,
    plan: StressPlan,
    name: str,
    wait_for_tasks: float,
    channel: SocketChannel,
) -> dict[str, bytes | None] | None:
    """The task on a Dask worker: the shard in this thread; rows as IPC bytes without a shared folder."""
    local = parts is None
    folder = Path(tempfile.mkdtemp(prefix="taskforge-perf-shard-")) / "parts" if local else Path(str(parts))
    folder.mkdir(parents=True, exist_ok=True)
    return shard_main(tester, shard, wall_start_ns, folder, plan, name, wait_for_tasks, channel, local)


class _DaskTransport:
    def __init__(self, futures: list[Any]) -> None:
        self.futures = futures
        self._ended: dict[int, float] = {}

    def lost(self, reported: set[int]) -> dict[int, str]:
        out = {}
        for k, f in enumerate(self.futures):
            if k in reported or f.status not in ("error", "cancelled", "lost", "finished"):
                continue
            first = self._ended.setdefault(k, time.monotonic())
            if time.monotonic() - first > EXIT_GRACE_S:
                exc = f.exception() if f.status == "error" else None
                out[k] = f"Dask task {f.status}" + (f": {type(exc).__name__}: {exc}" if exc else "")
        return out

    def returned(self) -> dict[int, dict[str, bytes | None]]:
        out = {}
        for k, f in enumerate(self.futures):
            if f.status == "finished":
                res = f.result()
                if res:
                    out[k] = res
        return out

    def close(self) -> None:
        for f in self.futures:
            try:
                f.result(timeout=30)
            except Exception:  # noqa: BLE001 - a failed shard is already reported
                pass


class DaskRunner:
    """Run a tester's plan over the workers of a dask.distributed cluster, one shard per worker.

    >>> from dask.distributed import Client                                    # doctest: +SKIP
    >>> client = Client("tcp://scheduler:8786")                                # doctest: +SKIP
    >>> tester = tfp.LoadTester(target, users, runner=tfp.DaskRunner(client))  # doctest: +SKIP
    >>> run = tester.run_sync(plan)   # one Run; run.events["worker"] tells the shards apart

    ``workers``: how many of the cluster's workers to use (default: all). ``shared_folder``: the
    workers can write the run folder (same machine or a shared file system); else each shard keeps
    its parts in a local temporary folder and returns its rows as Arrow IPC bytes at its end.
    """

    def __init__(self, client: Any, *, workers: int | None = None, shared_folder: bool = False) -> None:
        if not hasattr(client, "submit") or not hasattr(client, "scheduler_info"):
            raise ConfigError(
                f"DaskRunner(client): give a dask.distributed Client (got {type(client).__name__})"
            )
        names = list(client.scheduler_info().get("workers", {}))
        if not names:
            raise ConfigError("DaskRunner: the Dask cluster has no workers; start some first")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"DaskRunner(workers=...) must be an integer >= 1 or None (got {workers!r})")
        self.client = client
        self.addresses = names[: workers or len(names)]
        if workers is not None and workers > len(names):
            raise ConfigError(f"DaskRunner(workers={workers}): the cluster has only {len(names)} workers")
        self.workers = len(self.addresses)
        self.shared_folder = shared_folder

    def __repr__(self) -> str:
        return f"DaskRunner(workers={self.workers}, shared_folder={self.shared_folder})"

    def start(
        self,
        jobs: list[tuple[Any, Shard]],
        hub: Hub,
        wall_start_ns: int,
        parts: Path,
        plan: StressPlan,
        name: str,
        wait_for_tasks: float,
    ) -> _DaskTransport:
        futures = []
        for (tester, shard), addr in zip(jobs, self.addresses, strict=True):
            fut = self.client.submit(
                _dask_shard,
                tester,
                shard,
                wall_start_ns,
                str(parts) if self.shared_folder else None,
                plan,
                name,
                wait_for_tasks,
                hub.channel(shard.index),
                workers=[addr],
                allow_other_workers=False,
                pure=False,
                key=f"taskforge-perf-shard-{shard.index}-{wall_start_ns}",
            )
            futures.append(fut)
        return _DaskTransport(futures)

    def host(self) -> str:
        """The address the workers reach this process at (the route towards the scheduler)."""
        addr = str(self.client.scheduler.address)  # e.g. tcp://10.0.0.5:8786
        return reachable_host(urlsplit(addr).hostname)

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
