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
from taskforge_perf.schema import ANSWERED_ERRORS, TESTER_SIDE_KINDS


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
    #: ~p95 response time (t_end - t_intended) of the answered rows of the last interval, in ms.
    approx_resp_p95_ms: float | None = None
    #: Per load endpoint: (requests so far, target-side errors so far, ~p95 latency in ms of its
    #: answered rows in the last interval, or None when it had none).
    endpoints: dict[str, tuple[int, int, float | None]] = field(default_factory=dict)


Listener = Callable[[Snapshot], None]


#: Error kinds of rows the target answered (latency counts them) and of rows it never saw.
_ANSWERED_ERRORS = frozenset(ANSWERED_ERRORS)
_TESTER_SIDE = frozenset(TESTER_SIDE_KINDS)
_NOT_LOAD = frozenset(("setup", "teardown"))


def _p95(values: list[int]) -> float | None:
    if not values:
        return None
    values.sort()
    return values[min(len(values) - 1, int(0.95 * len(values)))] / 1e6


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
        self._endpoints: dict[str, list[int]] = {}  # load endpoint -> [requests, target-side errors]

    def snapshot(self) -> Snapshot:
        """A snapshot now (rates since the previous snapshot)."""
        now = self.clock.seconds()
        c = self.counters
        dt = max(now - self._last_t, 1e-9)
        rps = (c.requests - self._last_requests) / dt
        self._last_requests, self._last_t = c.requests, now
        # Latency of the rows buffered since the last snapshot (those flushed meanwhile are skipped).
        # Percentiles cover answered rows only (any status), as the Run's analysis does.
        rec = self.recorder
        buffered = rec.columns.rows
        rows_now = rec.rows
        new = min(rows_now - self._last_rows, len(buffered))
        self._last_rows = rows_now
        lat: list[int] = []
        resp: list[int] = []
        per_ep: dict[str, list[int]] = {}
        eps = self._endpoints
        for row in buffered[-new:] if new > 0 else ():
            err, endpoint = row[4], row[7]
            if row[10] in _NOT_LOAD:
                continue
            counts = eps.get(endpoint)
            if counts is None:
                counts = eps[endpoint] = [0, 0]
            counts[0] += 1
            if err is None or err in _ANSWERED_ERRORS:
                lat.append(row[2] - row[1])
                resp.append(row[2] - row[0])
                per_ep.setdefault(endpoint, []).append(row[2] - row[1])
                if err is not None:
                    counts[1] += 1
            elif err not in _TESTER_SIDE:
                counts[1] += 1
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
            approx_resp_p95_ms=_p95(resp),
            endpoints={k: (v[0], v[1], _p95(per_ep.get(k, []))) for k, v in sorted(eps.items())},
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
