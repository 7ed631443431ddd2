"""One running reference target: HTTP API + status gateway + workers on the current event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web

from taskforge_perf.target.app import HttpApi
from taskforge_perf.target.auth import AuthStore
from taskforge_perf.target.config import TargetConfig
from taskforge_perf.target.gateway import Gateway
from taskforge_perf.target.metrics import Metrics
from taskforge_perf.target.workers import Workers


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class TargetServer:
    """Starts and stops the target inside the running loop (the CLI runs it in its own process).

    >>> async def main():                                   # doctest: +SKIP
    ...     server = TargetServer(TargetConfig())
    ...     base_url, ws_url = await server.start()
    ...     await server.stop()
    """

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.auth = AuthStore(config)
        self.workers = Workers(config, self.metrics, lambda t, o, m, f: self.gateway.publish(t, o, m, f))
        self.gateway = Gateway(config, self.auth, self.workers, self.metrics)
        self.api = HttpApi(config, self.auth, self.workers, self.metrics)
        self._runner: web.AppRunner | None = None
        self._lag_task: asyncio.Task[None] | None = None

    async def _sample_lag(self, every: float = 0.5, keep: int = 120) -> None:
        """Event-loop lag samples for the nodejs_eventloop_lag_* families (one timer a half second)."""
        lag = self.metrics.loop_lag
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(every)
            lag.append(max(0.0, time.monotonic() - t0 - every))
            if len(lag) > keep:
                del lag[0]

    async def start(self) -> tuple[str, str]:
        """Bind both ports and start the workers; return ``(base_url, ws_url)``."""
        cfg = self.config
        await self.workers.start()
        self._runner = web.AppRunner(self.api.build(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port, backlog=2048)
        await site.start()
        http_port = int(self._runner.addresses[0][1])
        ws_port = await self.gateway.start()
        self.metrics.started = time.monotonic()
        self.api.mark_started(self.metrics.started)
        self._lag_task = asyncio.create_task(self._sample_lag())
        return _url("http", cfg.host, http_port), _url("ws", cfg.host, ws_port)

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
        await self.gateway.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.workers.stop()
