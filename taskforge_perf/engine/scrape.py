"""Scrape the target's own Prometheus ``/metrics`` during a run, on the run's clock.

``Target(metrics_url=...)`` (default: the API's ``/metrics``; None turns it off) is fetched every
monitor interval on a session of its own (its requests are not load rows and never take a
connection of the load), parsed with ``prometheus_client.parser`` and kept as rows
``(t, name, labels, value)``: ``t`` in ns on the run's clock (the same zero as ``events``),
``name`` the sample name (``..._total``, ``..._bucket``), ``labels`` the sample's labels in
Prometheus text (``route="POST /tasks",status="202"``). A failing scrape is logged once and
skipped: the run never depends on the target's metrics.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any

import aiohttp
import polars as pl

from taskforge_perf.engine.clock import Clock
from taskforge_perf.redact import redact_url
from taskforge_perf.results import TARGET_METRICS_SCHEMA

log = logging.getLogger(__name__)


def _label_text(labels: dict[str, str]) -> str:
    return ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )


def parse_samples(text: str) -> list[tuple[str, str, float]]:
    """(sample name, labels text, value) of every sample in Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (s.name, _label_text(s.labels), float(s.value))
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


class TargetScraper:
    """Fetches ``url`` every ``interval`` seconds from ``start()`` to ``stop()`` (one final scrape)."""

    def __init__(
        self, url: str, clock: Clock, interval: float, *, timeout: float = 5.0, ssl: Any = True
    ) -> None:
        self.url = url
        self.ssl = ssl
        self.clock = clock
        self.interval = interval
        self.timeout = timeout
        self.scrapes = 0
        self.failures = 0
        self.last_error: str | None = None
        # Raw texts, parsed when the frame is asked for: prometheus_client's parser costs ~37 µs
        # per sample (~4 ms for the reference target's 104), too long a block for the event loop
        # every interval while the load runs. Kept zlib-compressed (level 1: ~0.1 ms for the
        # reference target's 22 KB, 7x smaller) so a long run's memory stays flat: raw, they were
        # ~44 KB/s at two scrapes a second, ~70 B per recorded row in the 30 s soak check.
        self._texts: list[tuple[int, bytes]] = []
        self._frame: pl.DataFrame | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Scrape once (the baseline, before any load request), then every interval."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1, ssl=self.ssl),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            skip_auto_headers=("User-Agent",),
        )
        await self.scrape()
        self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.scrape()

    async def scrape(self) -> None:
        """One scrape; a failure is counted (and logged the first time), never raised."""
        if self._session is None:
            return
        try:
            async with self._session.get(self.url) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                text = await resp.text()
            t = self.clock.now()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the target's metrics never break a run
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        self.scrapes += 1
        self._texts.append((t, zlib.compress(text.encode(), 1)))

    async def stop(self) -> None:
        """Stop the loop, scrape a last time (after the load's last request), close the session."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._session is not None:
            await self.scrape()
            await self._session.close()
            self._session = None

    def _fail(self, what: str) -> None:
        self.failures += 1
        self.last_error = what[:200]
        if self.failures == 1:
            log.warning(
                "scraping the target's metrics at %s failed (%s); skipping failed scrapes",
                redact_url(self.url),
                self.last_error,
            )

    def frame(self) -> pl.DataFrame:
        """The samples so far as a frame (TARGET_METRICS_SCHEMA); a scrape whose text does not
        parse is counted as a failure and left out."""
        if self._frame is not None and not self._texts:
            return self._frame
        cols: tuple[list[Any], ...] = ([], [], [], [])
        ts, names, labels, values = cols
        for t, packed in self._texts:
            try:
                samples = parse_samples(zlib.decompress(packed).decode())
            except Exception as exc:  # noqa: BLE001 - a garbled scrape is skipped, never raised
                self.scrapes -= 1
                self._fail(f"unparsable metrics text: {type(exc).__name__}: {exc}")
                continue
            for name, lab, value in samples:
                ts.append(t)
                names.append(name)
                labels.append(lab)
                values.append(value)
        self._texts = []
        schema = TARGET_METRICS_SCHEMA
        new = pl.DataFrame([pl.Series(n, c, dtype=schema[n]) for n, c in zip(schema, cols, strict=True)])
        self._frame = new if self._frame is None else pl.concat([self._frame, new])
        return self._frame

    def summary(self) -> dict[str, Any]:
        """For run metadata: where, how many scrapes, failures and the last error."""
        return {
            "url": redact_url(self.url),
            "scrapes": self.scrapes,
            "failures": self.failures,
            "last_error": self.last_error,
        }
