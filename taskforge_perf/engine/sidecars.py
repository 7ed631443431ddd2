"""What runs beside the load: the Prometheus exporter and the scraper of the target's metrics.

The tester creates one ``Sidecars`` per run, starts it before set-up and stops it after the
last request (teardown included), so the tester's own code stays a few lines.
"""

from __future__ import annotations

import asyncio
from typing import Any

import polars as pl

from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.monitor import Listener
from taskforge_perf.engine.prom import LoadExporter, MetricsServer
from taskforge_perf.engine.recorder import ColumnBuffer, LiveCounters
from taskforge_perf.engine.scrape import TargetScraper


class Sidecars:
    """The exporter (a monitor listener, served on 127.0.0.1) and the target scraper of one run."""

    def __init__(
        self,
        metrics_port: int | None,
        metrics_url: str | None,
        clock: Clock,
        recorder: ColumnBuffer,
        counters: LiveCounters,
        interval: float,
        *,
        timeout: float = 5.0,
        ssl: Any = None,
    ) -> None:
        self.exporter: LoadExporter | None = None
        self.server: MetricsServer | None = None
        if metrics_port is not None:
            self.exporter = LoadExporter(recorder, counters, interval)
            self.server = MetricsServer(metrics_port, self.exporter)
        self.scraper = (
            TargetScraper(
                metrics_url,
                clock,
                interval,
                timeout=timeout,
                ssl=True if ssl is None else ssl,
            )
            if metrics_url
            else None
        )
        #: Monitor listeners to add to the run's (the exporter, when serving).
        self.listeners: list[Listener] = [self.exporter] if self.exporter is not None else []

    async def start(self) -> str | None:
        """Serve the metrics (a busy port is a ConfigError) and take the target's baseline scrape;
        returns the URL of the live metrics, or None."""
        url = self.server.start() if self.server is not None else None
        if self.scraper is not None:
            await self.scraper.start()
        return url

    async def stop(self) -> None:
        """Final scrape, then stop serving; runs to the end even when the run is cancelled."""

        async def _stop() -> None:
            if self.scraper is not None:
                await self.scraper.stop()
            if self.server is not None:
                await self.server.stop()

        try:
            await asyncio.shield(_stop())
        except asyncio.CancelledError:
            pass

    def finish(self, meta: dict[str, Any]) -> pl.DataFrame | None:
        """Note the sidecars in the run's meta; the target's samples (or None when not scraped)."""
        if self.server is not None:
            meta["metrics_port"] = self.server.port
        if self.scraper is None:
            return None
        frame = self.scraper.frame()  # parses the texts: failures known after
        meta["target_metrics"] = self.scraper.summary()
        return frame
