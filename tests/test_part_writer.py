"""The part writer and Polars' worker threads never preempt the event loop on wake-up (Linux)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from taskforge_perf.engine.part_writer import part_writer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux scheduling policies")


def test_writer_and_polars_threads_run_as_batch_and_the_caller_keeps_its_policy() -> None:
    mine = os.sched_getscheduler(0)
    assert part_writer().submit(os.sched_getscheduler, 0).result(timeout=30) == os.SCHED_BATCH
    names = {}
    for t in os.listdir("/proc/self/task"):
        try:
            names[int(t)] = Path(f"/proc/self/task/{t}/comm").read_text().strip()
        except OSError:
            continue  # a thread that ended meanwhile
    # Polars' pool (polars-0, polars-1, ...: the Parquet encoding runs there). Threads Polars starts
    # later on its own (polars-unmap-0, which unmaps read files) keep the policy of their starter.
    polars = {t: name for t, name in names.items() if re.fullmatch(r"polars-\d+", name)}
    assert polars  # the pool exists once the writer has started
    other = [name for t, name in polars.items() if os.sched_getscheduler(t) != os.SCHED_BATCH]
    assert not other, other
    assert os.sched_getscheduler(0) == mine  # the loop's thread (here the test's) is left alone
