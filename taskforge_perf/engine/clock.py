"""The run clock: monotonic nanoseconds since the run's start, anchored once on the wall clock."""

from __future__ import annotations

import time


class Clock:
    """``now()`` is ns since ``start`` on ``perf_counter_ns``; ``wall_start_ns`` anchors it."""

    __slots__ = ("t0", "wall_start_ns")

    def __init__(self) -> None:
        self.t0 = time.perf_counter_ns()
        self.wall_start_ns = time.time_ns()

    def now(self) -> int:
        """Nanoseconds since the run started."""
        return time.perf_counter_ns() - self.t0

    def seconds(self) -> float:
        """Seconds since the run started."""
        return (time.perf_counter_ns() - self.t0) * 1e-9
