"""Live load metrics for Prometheus, fed once per monitor interval (never per request).

``LoadTester(..., metrics_port=P)`` serves them on ``http://127.0.0.1:P/metrics`` while a run goes,
with prometheus_client's own HTTP server on a ``CollectorRegistry`` of the run (no global registry;
nothing happens at import). Each monitor Snapshot, :class:`LoadExporter` takes the HTTP rows
recorded since the previous one from the recorder's buffers and adds them up in one pass
(requests and errors per endpoint, latency bucket increments per endpoint: ~0.5 ms per tick at
1,000 req/s, benchmarks/bench_prom.py); scrapes read the families built then, so a scrape never
touches the event loop's data.

Metric names (all prefixed ``taskforge_perf_``):

=========================================  =========  ===================================
requests_total{endpoint}                   counter    requests recorded (any outcome)
errors_total{endpoint,kind}                counter    rows with an error kind
request_duration_seconds{endpoint}         histogram  latency of answered rows
in_flight                                  gauge      requests sent, not yet answered
ws_connections                             gauge      open WebSocket connections
tasks_created_total / tasks_completed_total counter   tasks (202 seen / completion message)
phase{phase}                               gauge      1 for the current phase
elapsed_seconds / planned_seconds          gauge      progress of the load
late_requests_total                        counter    open model: requests started late
dropped_requests_total                     counter    requests never sent (drain timeout)
monitor_delay_seconds                      gauge      how late the last monitor tick ran
=========================================  =========  ===================================
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import polars as pl

from taskforge_perf.errors import ConfigError
from taskforge_perf.schema import ANSWERED_ERRORS

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from taskforge_perf.engine.monitor import Snapshot
    from taskforge_perf.engine.recorder import ColumnBuffer, LiveCounters

PREFIX = "taskforge_perf_"
#: Latency bucket bounds (seconds), the same as the reference target's histogram; +Inf implied.
BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BOUNDS_NS = [round(b * 1e9) for b in BUCKETS]  # bisect_left: a latency equal to a bound is "le"
_ANSWERED = frozenset(ANSWERED_ERRORS)
_COLS = ("t_start", "t_end", "error", "endpoint")
_DTYPES = {"t_start": pl.Int64(), "t_end": pl.Int64(), "error": pl.String(), "endpoint": pl.String()}


def rows_since(buf: ColumnBuffer, seen: int) -> pl.DataFrame:
    """The rows recorded after the first ``seen`` ones (t_start, t_end, error, endpoint).

    Rows are read newest first from the open buffer, the batches being converted, then the
    chunks (or spilled parts) until enough are found; called on the loop thread between events.
    """
    need = buf.rows - seen
    pieces: list[pl.DataFrame] = []
    idx = [buf.names.index(c) for c in _COLS]
    cur = len(buf.columns[0])
    if need > 0 and cur:
        take = min(need, cur)
        pieces.append(
            pl.DataFrame(
                [
                    pl.Series(c, buf.columns[i][cur - take :], dtype=_DTYPES[c])
                    for c, i in zip(_COLS, idx, strict=True)
                ]
            )
        )
        need -= take
    for batch in reversed(buf._converting):
        if need <= 0:
            break
        cols = []
        for c, i in zip(_COLS, idx, strict=True):
            s = batch.series[i] if i < len(batch.series) else pl.Series(c, batch.cols[i])
            cols.append(s.alias(c).cast(_DTYPES[c]))
        frame = pl.DataFrame(cols)
        pieces.append(frame.tail(need))
        need -= min(need, frame.height)
    stored: list[Any] = list(buf._parts) + list(buf._chunks)
    for item in reversed(stored):
        if need <= 0:
            break
        frame = pl.read_parquet(item, columns=list(_COLS)) if not isinstance(item, pl.DataFrame) else item
        frame = frame.select([pl.col(c).cast(_DTYPES[c]) for c in _COLS])
        pieces.append(frame.tail(need))
        need -= min(need, frame.height)
    if not pieces:
        return pl.DataFrame(schema=_DTYPES)
    return pl.concat(list(reversed(pieces)), how="vertical")


class LoadExporter:
    """A Snapshot listener that keeps Prometheus families of the live load (one per run)."""

    def __init__(self, recorder: ColumnBuffer, counters: LiveCounters, interval: float) -> None:
        self.recorder = recorder
        self.counters = counters
        self.interval = interval
        self._seen = 0
        self.requests: dict[str, int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}
        self._last_tick: float | None = None
        self._families: list[Any] = []

    def __call__(self, snap: Snapshot) -> None:
        """Add the rows recorded since the last Snapshot, then rebuild the families."""
        now = time.perf_counter()
        delay = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick - self.interval)
        self._last_tick = now
        rows = rows_since(self.recorder, self._seen)
        self._seen += rows.height
        if rows.height:
            self._add(rows)
        self._families = self._build(snap, delay)

    def _add(self, rows: pl.DataFrame) -> None:
        # One plain loop over the interval's rows: a Polars pass costs ~0.3 ms per call whatever
        # the row count (four group_bys took ~1.8 ms for 500 rows); this takes ~0.6 µs per row.
        req, errs, buckets, sums = self.requests, self.errors, self.buckets, self.sums
        answered = _ANSWERED
        nb = len(BUCKETS) + 1
        cols = rows.get_columns()
        for t0, t1, kind, ep in zip(*(c.to_list() for c in cols), strict=True):
            req[ep] = req.get(ep, 0) + 1
            if kind is not None:
                errs[(ep, kind)] = errs.get((ep, kind), 0) + 1
                if kind not in answered:
                    continue
            lat = t1 - t0
            counts = buckets.get(ep)
            if counts is None:
                counts = buckets[ep] = [0] * nb
                sums[ep] = 0.0
            counts[bisect_left(_BOUNDS_NS, lat)] += 1
            sums[ep] += lat / 1e9

    def _build(self, snap: Snapshot, delay: float) -> list[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        fams: list[Any] = []
        req = CounterMetricFamily(PREFIX + "requests", "Requests recorded, any outcome.", labels=["endpoint"])
        for ep, n in sorted(self.requests.items()):
            req.add_metric([ep], n)
        fams.append(req)
        err = CounterMetricFamily(
            PREFIX + "errors", "Requests with an error kind.", labels=["endpoint", "kind"]
        )
        for (ep, kind), n in sorted(self.errors.items()):
            err.add_metric([ep, kind], n)
        fams.append(err)
        hist = HistogramMetricFamily(
            PREFIX + "request_duration_seconds", "Latency of answered requests.", labels=["endpoint"]
        )
        for ep, counts in sorted(self.buckets.items()):
            cum, pairs = 0, []
            for le, n in zip((*map(repr, BUCKETS), "+Inf"), counts, strict=True):
                cum += n
                pairs.append((le, cum))
            hist.add_metric([ep], pairs, self.sums.get(ep, 0.0))
        fams.append(hist)
        c = self.counters
        for name, doc, value in (
            ("in_flight", "Requests sent and not yet answered.", snap.in_flight),
            ("ws_connections", "Open WebSocket connections.", snap.ws_open),
            ("elapsed_seconds", "Seconds of load so far.", snap.elapsed_s),
            ("planned_seconds", "Seconds of load the plan asks for.", snap.planned_s),
            ("monitor_delay_seconds", "How late the last monitor tick ran (event-loop lag).", delay),
        ):
            fams.append(GaugeMetricFamily(PREFIX + name, doc, value=value))
        for name, doc, value in (
            ("tasks_created", "Tasks created (202 with a taskId).", snap.tasks_created),
            ("tasks_completed", "Tasks whose completion reached a WebSocket.", snap.ws_completed),
            ("late_requests", "Open model: requests that started after their intended time.", snap.late),
            ("dropped_requests", "Requests never sent (still queued at the drain timeout).", c.dropped),
        ):
            fams.append(CounterMetricFamily(PREFIX + name, doc, value=value))
        phase = GaugeMetricFamily(PREFIX + "phase", "1 for the phase the load is in.", labels=["phase"])
        phase.add_metric([snap.phase], 1)
        fams.append(phase)
        return fams

    def collect(self) -> Iterator[Any]:
        """prometheus_client's Collector protocol: the families built at the last Snapshot."""
        return iter(self._families)

    def describe(self) -> Iterable[Any]:
        """No fixed description: the registry must not call ``collect`` at registration."""
        return ()


class MetricsServer:
    """prometheus_client's HTTP server on 127.0.0.1 over a registry of its own (one per run)."""

    def __init__(self, port: int, collector: Collector) -> None:
        self.requested = port
        self.collector = collector
        self._server: Any = None
        self._thread: Any = None
        #: The port bound (the free port picked when 0 was asked for), once started.
        self.port: int | None = None

    def start(self) -> str:
        """Bind and serve; returns the URL. A busy port is a ConfigError naming it."""
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        try:
            self._server, self._thread = start_http_server(
                self.requested, addr="127.0.0.1", registry=registry
            )
        except OSError as exc:
            raise ConfigError(
                f"metrics_port {self.requested}: cannot serve metrics on 127.0.0.1:{self.requested} "
                f"({exc.strerror or exc}); pick a free port, or 0 to let the system choose one"
            ) from None
        self.port = int(self._server.server_port)
        return self.url

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/metrics``."""
        return f"http://127.0.0.1:{self.port}/metrics"

    async def stop(self) -> None:
        """Stop serving (off the event loop: ``shutdown`` waits for the server's poll)."""
        server, self._server = self._server, None
        if server is None:
            return

        def _close() -> None:
            server.shutdown()
            server.server_close()

        await asyncio.to_thread(_close)


def check_port(port: Any) -> int | None:
    """``metrics_port``: None (off), 0 (a free port) or 1..65535."""
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(
            f"metrics_port must be an integer port 1..65535, 0 for a free one, or None for no "
            f"Prometheus endpoint (got {port!r})"
        )
    return port
