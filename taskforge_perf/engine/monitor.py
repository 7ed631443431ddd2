"""Live snapshots of a run for progress displays: a periodic task that never touches the hot path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.health import CPU_LIMIT, LAG_LIMIT_MS, HealthProbe
from taskforge_perf.engine.http import DriverState
from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters


@dataclass(frozen=True)
class Snapshot:
    """What a live view shows. Latency percentiles are a streaming estimate over the rows of the
    last interval (approximate, labelled as such); exact figures come from the Run afterwards."""

    elapsed_s: float
    planned_s: float
    phase: str
    phase_remaining_s: float
    rps: float
    requests: int
    in_flight: int
    errors: dict[str, int]
    approx_p50_ms: float | None
    approx_p95_ms: float | None
    approx_p99_ms: float | None
    tasks_created: int
    ws_open: int
    ws_completed: int
    late: int
    extra: dict[str, Any] = field(default_factory=dict)
    #: Requests in flight after the plan's end (finishing within the drain grace), else 0.
    draining: int = 0
    #: The generator's health in the last closed interval (engine.health): event-loop lag p99
    #: (ms), process CPU share (1.0 = one core), and why it is saturated (None when it is not).
    lag_p99_ms: float | None = None
    cpu: float | None = None
    saturated: str | None = None


Listener = Callable[[Snapshot], None]


def _quantiles(values: list[int]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    values.sort()
    n = len(values)

    def q(p: float) -> float:
        return values[min(n - 1, int(p * n))] / 1e6

    return q(0.5), q(0.95), q(0.99)


class Monitor:
    """Calls listeners with a Snapshot every ``interval`` seconds while a run goes."""

    def __init__(
        self,
        listeners: list[Listener],
        clock: Clock,
        counters: LiveCounters,
        recorder: HttpRecorder,
        state: DriverState,
        *,
        interval: float = 0.5,
        planned_s: float = 0.0,
        load_start: Callable[[], float | None],
        phase_remaining: Callable[[float], float],
        health: HealthProbe | None = None,
    ) -> None:
        self.listeners = listeners
        self.clock = clock
        self.counters = counters
        self.recorder = recorder
        self.state = state
        self.interval = interval
        self.planned_s = planned_s
        self.load_start = load_start
        self.phase_remaining = phase_remaining
        self.health = health
        self._last_requests = 0
        self._last_t = 0.0
        self._last_rows = 0

    def snapshot(self) -> Snapshot:
        """A snapshot now (rates since the previous snapshot)."""
        now = self.clock.seconds()
        c = self.counters
        dt = max(now - self._last_t, 1e-9)
        rps = (c.requests - self._last_requests) / dt
        self._last_requests, self._last_t = c.requests, now
        # Latency of the rows buffered since the last snapshot (those flushed meanwhile are skipped).
        rec = self.recorder
        starts, ends = rec.columns[1], rec.columns[2]
        rows_now = rec.rows
        new = min(rows_now - self._last_rows, len(ends))
        self._last_rows = rows_now
        lat = [e - s for s, e in zip(starts[-new:], ends[-new:], strict=True)] if new > 0 else []
        p50, p95, p99 = _quantiles(lat)
        start = self.load_start()
        elapsed = now - start if start is not None else 0.0
        lag = cpu = None
        saturated = None
        if self.health is not None and self.health.rows:
            last = self.health.rows[-1]
            lag, cpu = last["lag_p99_ms"], last["cpu"]
            if lag is not None and lag > LAG_LIMIT_MS:
                saturated = f"event-loop lag p99 {lag:.0f} ms"
            elif cpu > CPU_LIMIT:
                saturated = f"CPU {cpu:.0%}"
        return Snapshot(
            elapsed_s=elapsed,
            planned_s=self.planned_s,
            phase=self.state.phase,
            phase_remaining_s=self.phase_remaining(elapsed) if start is not None else 0.0,
            rps=rps,
            requests=c.requests,
            in_flight=c.in_flight,
            errors=dict(c.errors),
            approx_p50_ms=p50,
            approx_p95_ms=p95,
            approx_p99_ms=p99,
            tasks_created=c.tasks_created,
            ws_open=c.ws_open,
            ws_completed=c.ws_completed,
            late=c.late,
            draining=c.in_flight if self.state.draining else 0,
            lag_p99_ms=lag,
            cpu=cpu,
            saturated=saturated,
        )

    async def run(self) -> None:
        """Loop until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            snap = self.snapshot()
            for listener in self.listeners:
                try:
                    listener(snap)
                except Exception:  # noqa: BLE001 - a broken display must never stop the load
                    self.listeners.remove(listener)
