"""Generator health: is the tester itself keeping up? Measured per interval, never per request.

A load tester that runs short of CPU or whose event loop is busy reports its own queueing as the
target's latency. While a run goes, ``HealthProbe`` measures, per interval (the monitor's):

- **event-loop lag**: a timer asks to wake every ``TICK_S``; how late it wakes (the overshoot)
  is the time any callback (a response, a scheduled start) waits. On Linux the overshoot is split
  with the loop thread's run-queue wait (``/proc/thread-self/schedstat``): the part spent waiting
  for a CPU is the *machine's* doing (other processes), the rest (``own_lag``) is the tester's own
  work (callbacks ahead of the timer: responses, WebSocket messages, flushes);
- **CPU share**: process CPU time (``time.process_time``, all threads) over wall time: 1.0 is
  one core busy all the time;
- **start lateness** (open model): ``t_start - t_intended`` of the requests the schedule started
  itself (not those queued behind the in-flight cap: that wait is the target's doing).

Past the documented limits below the run is *generator saturated*: its latencies include the
tester's own queueing. Each reason names its cause: ``"tester"`` (own lag, CPU share, or
lateness while the own lag was over its limit) or ``"machine"`` (lag or lateness while the
tester was waiting for a CPU). The rows go to ``run.health``, the summary to ``meta["generator"]``.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from collections.abc import Callable
from typing import Any

import polars as pl

from taskforge_perf.engine.clock import Clock
from taskforge_perf.schema import HEALTH_SCHEMA

#: What a "machine" reason suggests: the tester's thread waited while other processes ran.
MACHINE_ADVICE = (
    " (other processes ran on the tester's core: give it a core of its own, e.g. taskset, or "
    "real-time priority, e.g. chrt -f 50)"
)
#: Event-loop lag p99 above this (ms) means callbacks waited behind the tester's own work.
LAG_LIMIT_MS = 5.0
#: Process CPU share above this (of one core) in an interval means the tester ran out of CPU.
CPU_LIMIT = 0.90
#: Open-model start lateness p99 above this (ms) means the schedule was not kept.
LATENESS_LIMIT_MS = 5.0
#: The lag timer's period (s): 100 wake-ups per second, a few µs each.
TICK_S = 0.01
#: CPU share is judged on intervals at least this long (a last short interval is too noisy).
MIN_CPU_INTERVAL_S = 0.2
#: Run-wide lateness p99 comes from a histogram of this resolution (ns).
LATENESS_BUCKET_NS = 100_000


def _q(sorted_values: list[Any], q: float) -> Any:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _open_schedstat() -> int | None:
    """A descriptor on the calling thread's scheduler stats (Linux), or None."""
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        _wait_ns(fd)
        return fd
    except (OSError, ValueError, IndexError):
        return None


def _wait_ns(fd: int) -> int:
    """Nanoseconds the thread has spent runnable but not running (waiting for a CPU)."""
    return int(os.pread(fd, 128, 0).split()[1])


class HealthProbe:
    """Measures the generator's health while a run goes (``start`` / ``stop`` around the load).

    ``lateness`` is the driver's list of open-model start lateness (ns), appended per start and
    emptied here once per interval; ``in_flight`` and ``phase`` are read once per interval.
    """

    def __init__(
        self,
        clock: Clock,
        lateness: list[int],
        *,
        interval: float = 0.5,
        phase: Callable[[], str] = lambda: "",
        in_flight: Callable[[], int] = lambda: 0,
        process_time: Callable[[], float] = time.process_time,
    ) -> None:
        self.clock = clock
        self.lateness = lateness
        self.interval = interval
        self.phase = phase
        self.in_flight = in_flight
        self.process_time = process_time
        self.rows: list[dict[str, Any]] = []
        self._lags_run: list[float] = []  # every tick's overshoot, ms (100 per second)
        self._late_hist: dict[int, int] = {}
        self._late_n = 0
        self._lags: list[float] = []
        self._own: list[float] = []  # the overshoot minus the run-queue wait, ms
        self._own_run: list[float] = []
        self._fd: int | None = None
        self._wait_last = 0
        self._task: asyncio.Task[None] | None = None
        self._t0 = self._t_last = 0
        self._cpu_last = 0.0

    # --- lifecycle -----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Open the scheduler stats before the load's clock starts: opening them took 9-14 ms in
        a running generator, which made the first arrivals of an open model that late."""
        if self._fd is None:
            self._fd = _open_schedstat()  # on the loop's thread: the thread whose waits count

    def start(self) -> None:
        """Start measuring now (the load's start)."""
        self._t0 = self._t_last = self.clock.now()
        self._cpu_last = self.process_time()
        self.prepare()
        self._wait_last = _wait_ns(self._fd) if self._fd is not None else 0
        self.lateness.clear()
        self._task = asyncio.ensure_future(self._ticker())

    async def stop(self) -> None:
        """Stop and close the last interval."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            self._close_interval(self.clock.now())
        if self._fd is not None:  # also when only prepared
            os.close(self._fd)
            self._fd = None

    async def _ticker(self) -> None:
        clock, lags, own, tick, fd = self.clock, self._lags, self._own, TICK_S, self._fd
        every = int(self.interval * 1e9)
        want = int(tick * 1e9)
        wait = self._wait_last
        while True:
            t = clock.now()
            await asyncio.sleep(tick)
            now = clock.now()
            over = max(now - t - want, 0)
            lags.append(over / 1e6)
            if fd is not None:
                w = _wait_ns(fd)
                own.append(max(over - (w - wait), 0) / 1e6)
                wait = w
            else:
                own.append(over / 1e6)
            if now - self._t_last >= every:
                self._close_interval(now)

    def _close_interval(self, now: int) -> None:
        dt = (now - self._t_last) / 1e9
        if dt <= 0:
            return
        cpu_now = self.process_time()
        cpu = (cpu_now - self._cpu_last) / dt
        self._cpu_last, self._t_last = cpu_now, now
        lags = sorted(self._lags)
        self._lags_run.extend(self._lags)
        self._lags.clear()
        own = sorted(self._own)
        self._own_run.extend(self._own)
        self._own.clear()
        wait_share = None
        if self._fd is not None:
            w = _wait_ns(self._fd)
            wait_share = (w - self._wait_last) / 1e9 / dt
            self._wait_last = w
        late = sorted(self.lateness)
        self.lateness.clear()
        hist = self._late_hist
        i, n = 0, len(late)
        while i < n:  # a bisect per bucket, not a Python step per start (2.1 -> 0.7 ms at 8,000)
            b = max(late[i], 0) // LATENESS_BUCKET_NS
            j = bisect.bisect_left(late, (b + 1) * LATENESS_BUCKET_NS, i)
            hist[b] = hist.get(b, 0) + j - i
            i = j
        self._late_n += len(late)
        self.rows.append(
            {
                "t_s": (now - self._t0) / 1e9,
                "interval_s": dt,
                "phase": self.phase(),
                "ticks": len(lags),
                "lag_p50_ms": _q(lags, 0.5) if lags else None,
                "lag_p99_ms": _q(lags, 0.99) if lags else None,
                "lag_max_ms": lags[-1] if lags else None,
                "own_lag_p99_ms": _q(own, 0.99) if own else None,
                "cpu": cpu,
                "cpu_wait": wait_share,
                "starts": len(late),
                "lateness_p99_ms": _q(late, 0.99) / 1e6 if late else None,
                "lateness_max_ms": late[-1] / 1e6 if late else None,
                "in_flight": self.in_flight(),
            }
        )

    # --- results -------------------------------------------------------------------------------

    def frame(self) -> pl.DataFrame:
        """One row per interval (``HEALTH_SCHEMA``)."""
        return pl.DataFrame(self.rows, schema=HEALTH_SCHEMA)

    def current_lag_p99_ms(self) -> float | None:
        """The lag p99 of the last closed interval (for live views)."""
        return self.rows[-1]["lag_p99_ms"] if self.rows else None

    def summary(self) -> dict[str, Any]:
        """Run-wide figures, the limits, ``saturated`` and the reasons (JSON-safe; meta["generator"])."""
        lags = sorted(self._lags_run + self._lags)
        lag_p99 = _q(lags, 0.99) if lags else None
        own = sorted(self._own_run + self._own)
        own_p99 = _q(own, 0.99) if own else None
        waits = [r["cpu_wait"] for r in self.rows if r["cpu_wait"] is not None]
        cpus = [r["cpu"] for r in self.rows if r["interval_s"] >= MIN_CPU_INTERVAL_S]
        cpu_max = max(cpus) if cpus else None
        lateness_p99 = None
        if self._late_n:
            rank, seen = int(0.99 * self._late_n), 0
            for b in sorted(self._late_hist):
                seen += self._late_hist[b]
                if seen > rank:
                    lateness_p99 = (b + 1) * LATENESS_BUCKET_NS / 1e6  # the bucket's upper edge
                    break
        reasons: list[str] = []
        causes: set[str] = set()

        def flag(cause: str, text: str) -> None:
            causes.add(cause)
            reasons.append(f"{cause}: {text}")

        own_over = own_p99 is not None and own_p99 > LAG_LIMIT_MS
        cpu_over = cpu_max is not None and cpu_max > CPU_LIMIT
        if own_over:
            flag(
                "tester",
                f"event loop busy with the tester's own work: lag p99 {own_p99:.1f} ms > {LAG_LIMIT_MS:g} ms",
            )
        if cpu_over:
            flag("tester", f"process CPU {cpu_max:.0%} of a core > {CPU_LIMIT:.0%} in an interval")
        if lag_p99 is not None and lag_p99 > LAG_LIMIT_MS and not own_over:
            flag(
                "machine",
                f"waiting for a CPU (machine busy): event-loop lag p99 {lag_p99:.1f} ms > "
                f"{LAG_LIMIT_MS:g} ms while the tester's own part stayed under it{MACHINE_ADVICE}",
            )
        if lateness_p99 is not None and lateness_p99 > LATENESS_LIMIT_MS:
            tester = own_over or cpu_over
            flag(
                "tester" if tester else "machine",
                f"open-model start lateness p99 {lateness_p99:.1f} ms > {LATENESS_LIMIT_MS:g} ms"
                + ("" if tester else MACHINE_ADVICE),
            )
        return {
            "lag_p99_ms": lag_p99,
            "lag_max_ms": lags[-1] if lags else None,
            "own_lag_p99_ms": own_p99,
            "cpu_wait_max": max(waits) if waits else None,
            "cpu_max": cpu_max,
            "cpu_mean": sum(cpus) / len(cpus) if cpus else None,
            "lateness_p99_ms": lateness_p99,
            "starts": self._late_n,
            "ticks": len(lags),
            "saturated": bool(reasons),
            "causes": sorted(causes),
            "reasons": reasons,
            "limits": {
                "lag_p99_ms": LAG_LIMIT_MS,
                "cpu_max": CPU_LIMIT,
                "lateness_p99_ms": LATENESS_LIMIT_MS,
            },
        }
