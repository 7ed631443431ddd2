"""The thread that writes a run's Parquet part files while the event loop goes on (``recorder``)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_writer: tuple[int, ThreadPoolExecutor] | None = None
#: The names (``comm`` prefixes) of the threads Polars runs the Parquet encoding on.
_POLARS_THREADS = ("polars-", "tokio", "async-exec")


def _batch_policy() -> None:
    """Put the part writer and Polars' worker threads under ``SCHED_BATCH``.

    They share the loop's core (the whole process is usually pinned to one) and, under the default
    policy, a waking writer preempts the event loop for its Parquet encoding (1-3 ms a part): the
    loop thread's run-queue wait showed up as open-model start lateness blamed on the "machine".
    A batch thread never preempts on wake-up but keeps its fair share (same nice value, so no
    priority inversion while it holds the GIL or a Polars lock). It also takes them out of a
    real-time policy when the loop's thread is real-time (``chrt``): a real-time encoder would hold
    the CPU against the loop. Polars' pool is created here if it does not exist yet, so that its
    threads inherit the policy."""
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        return  # not Linux: the default policy stays
    import polars as pl

    pl.thread_pool_size()
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return
    for t in tids:
        try:
            if Path(f"/proc/self/task/{t}/comm").read_text().startswith(_POLARS_THREADS):
                os.sched_setscheduler(int(t), os.SCHED_BATCH, os.sched_param(0))
        except OSError:
            continue  # a thread that ended meanwhile (a pytest process has many): not the others


def part_writer() -> ThreadPoolExecutor:
    """One writer thread per process (parts are written in order)."""
    global _writer
    if _writer is None or _writer[0] != os.getpid():  # a forked child gets its own
        _writer = (os.getpid(), ThreadPoolExecutor(1, "tfp-parts", initializer=_batch_policy))
    return _writer[1]
