"""The health probe opens its scheduler stats before the load's clock starts (h26, issue 19 item 2)."""

from __future__ import annotations

import os
import sys

import pytest

from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.health import HealthProbe

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="scheduler stats are Linux-only")


async def test_prepare_opens_the_stats_once_and_start_reuses_them() -> None:
    probe = HealthProbe(Clock(), [])
    probe.prepare()
    fd = probe._fd
    assert fd is not None  # opened before the load starts (it took 9-14 ms in a running generator)
    probe.start()
    assert probe._fd == fd  # start() does not open them again
    await probe.stop()
    assert probe._fd is None
    with pytest.raises(OSError):
        os.fstat(fd)


async def test_a_prepared_probe_that_never_started_closes_its_stats() -> None:
    probe = HealthProbe(Clock(), [])
    probe.prepare()
    fd = probe._fd
    assert fd is not None
    await probe.stop()  # a run that failed between prepare and start
    assert probe._fd is None and probe.rows == []
    with pytest.raises(OSError):
        os.fstat(fd)
