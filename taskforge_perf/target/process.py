"""``ReferenceTarget``: the reference target as a child process (sync and async context manager)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from types import TracebackType
from typing import IO, Any

from taskforge_perf.target.config import TargetConfig
from taskforge_perf.target.metrics import parse_prometheus


class TargetStartError(RuntimeError):
    """The target process died or did not report ready in time (the message holds its stderr)."""


class ReferenceTarget:
    """Start ``python -m taskforge_perf target`` built from a ``TargetConfig``; always stop it.

    Knobs are the fields of :class:`TargetConfig`, given as a config, as keywords, or both (the
    keywords replace fields of the config). The child exits when this process closes its stdin, so
    it cannot outlive its parent even if the parent is killed.

    >>> with ReferenceTarget(latency="POST /tasks=exp:20ms", seed=1) as target:  # doctest: +SKIP
    ...     print(target.base_url, target.ws_url)
    >>> async with ReferenceTarget(real_quirks=True) as target:                  # doctest: +SKIP
    ...     counts = await target.ametrics()
    """

    def __init__(
        self,
        config: TargetConfig | None = None,
        *,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        **knobs: Any,
    ) -> None:
        if config is None:
            config = TargetConfig(**knobs)
        elif knobs:
            config = replace(config, **knobs)
        if startup_timeout <= 0:
            raise ValueError("startup_timeout: must be > 0 seconds")
        self.config = config
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._info: dict[str, Any] = {}

    def __repr__(self) -> str:
        state = f"pid={self.pid} {self.base_url}" if self._proc is not None else "stopped"
        return f"<ReferenceTarget {state}>"

    # --- addresses ------------------------------------------------------------------------------

    def _need(self, key: str) -> Any:
        if key not in self._info:
            raise RuntimeError("ReferenceTarget is not running: use it in a `with` block first")
        return self._info[key]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the HTTP API."""
        return str(self._need("base_url"))

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT`` of the status gateway (append ``/?token=...``)."""
        return str(self._need("ws_url"))

    @property
    def pid(self) -> int:
        return int(self._need("pid"))

    # --- start and stop -------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The child's command line."""
        return [
            sys.executable,
            "-m",
            "taskforge_perf",
            "target",
            *self.config.to_argv(),
            "--exit-with-parent",
        ]

    def start(self) -> ReferenceTarget:
        """Start the child and wait for its ready line (blocking)."""
        if self._proc is not None:
            raise RuntimeError("ReferenceTarget is already running")
        self._stderr = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            close_fds=True,
        )
        try:
            self._info = self._read_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_ready(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        out = self._proc.stdout
        deadline = time.monotonic() + self.startup_timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TargetStartError(
                        f"the target did not report ready within {self.startup_timeout:g} s "
                        f"(raise startup_timeout?); stderr:\n{self._stderr_text()}"
                    )
                if sel.select(min(left, 0.5)):
                    chunk = os.read(out.fileno(), 4096)
                    if not chunk:
                        self._proc.wait(2)
                        raise TargetStartError(
                            f"the target exited with code {self._proc.returncode} before it was "
                            f"ready; stderr:\n{self._stderr_text()}"
                        )
                    buf += chunk
        line = buf.split(b"\n", 1)[0]
        try:
            info = json.loads(line)
            _ = info["base_url"], info["ws_url"], info["pid"]
        except (ValueError, KeyError, TypeError):
            raise TargetStartError(f"unexpected ready line from the target: {line!r}") from None
        return dict(info)

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-8000:].decode(errors="replace")

    def stop(self) -> None:
        """Stop the child: SIGTERM, wait ``stop_timeout``, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        self._info = {}
        if proc is not None:
            try:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(self.stop_timeout)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            finally:
                for f in (proc.stdin, proc.stdout):
                    if f is not None:
                        with contextlib.suppress(OSError):
                            f.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> ReferenceTarget:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> ReferenceTarget:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.shield(asyncio.to_thread(self.stop))

    # --- metrics --------------------------------------------------------------------------------

    def metrics(self) -> dict[str, dict[tuple[str, ...], float]]:
        """GET /metrics parsed as ``{metric: {label values: value}}`` (blocking).

        ``m["taskforge_http_requests_total"][("POST /tasks", "202")]`` is the number of 202s on
        POST /tasks; ``m["taskforge_tasks_created_total"][("generate-pdf",)]`` the tasks created;
        ``m["taskforge_ws_connections"][()]`` the open sockets.
        """
        with urllib.request.urlopen(self.base_url + "/metrics", timeout=10) as resp:
            return parse_prometheus(resp.read().decode())

    async def ametrics(self) -> dict[str, dict[tuple[str, ...], float]]:
        """``metrics()`` without blocking the event loop."""
        return await asyncio.to_thread(self.metrics)

    def requests_total(self) -> dict[tuple[str, str], float]:
        """``{(route, status): count}`` from ``taskforge_http_requests_total``."""
        raw = self.metrics().get("taskforge_http_requests_total", {})
        return {(k[0], k[1]): v for k, v in raw.items()}
