"""The thread that writes a run's Parquet part files while the event loop goes on (``recorder``)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_writer: tuple[int, ThreadPoolExecutor] | None = None


def _no_realtime() -> None:
    """The part writer and Polars' pool threads (``polars-N``, where the Parquet encoding runs) run
    under the default policy even when the loop's thread is real-time (``chrt``): a real-time pool
    thread would hold the CPU against the loop. Their nice value is left alone on purpose: a
    lower-priority thread holding the GIL or a Polars lock would stall the loop behind other
    processes (priority inversion)."""
    try:
        tids = [threading.get_native_id()] + [
            int(t)
            for t in os.listdir("/proc/self/task")
            if Path(f"/proc/self/task/{t}/comm").read_text().startswith("polars-")
        ]
        for tid in tids:
            if os.sched_getscheduler(tid) != os.SCHED_OTHER:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError, ValueError):
        pass


def part_writer() -> ThreadPoolExecutor:
    """One writer thread per process (parts are written in order)."""
    global _writer
    if _writer is None or _writer[0] != os.getpid():  # a forked child gets its own
        _writer = (os.getpid(), ThreadPoolExecutor(1, "tfp-parts", initializer=_no_realtime))
    return _writer[1]
