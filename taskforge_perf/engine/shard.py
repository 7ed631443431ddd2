"""One shard of a run: a partition of the users, a share of the load, a common clock and start.

A run over N workers (processes or Dask workers) runs N shards of one plan. Shard ``k`` of ``N``:

- takes the users ``k, k+N, k+2N, ...`` of the pool (a partition: a user is never shared, since
  rotating refresh tokens used from two processes would revoke each other);
- takes open-model arrivals ``k, k+N, k+2N, ...`` of the plan's exact schedule, so the merged
  schedule is the planned one (no burst at shard boundaries);
- runs ``share(c)`` of a closed-model concurrency ``c`` or of the WebSocket connections (``c // N``,
  one more for the first ``c % N`` shards);
- places its rows on the parent's timeline (its clock is anchored on the parent's wall-clock start)
  and starts its load at the parent's common load start, so phases line up.

``ShardLink`` is how a shard talks to its parent: it reports ready, waits for the common start,
sends live Snapshots and hears "stop". The transport (a multiprocessing queue, a Dask queue) is
behind two blocking calls, ``send`` and ``recv``; a thread turns incoming messages into loop events.
"""

from __future__ import annotations

import asyncio
import copy
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

from taskforge_perf.engine.clock import Clock
from taskforge_perf.errors import ConfigError
from taskforge_perf.users import UserPool

#: Seconds between the last shard's "ready" and the common load start (time for the message).
START_MARGIN_S = 0.25


@dataclass(frozen=True, kw_only=True)
class Shard:
    """Which shard of how many (``Shard()`` is the whole run, in one process)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ConfigError(f"shard index must be in 0..{self.count - 1} (got {self.index})")

    def share(self, n: int) -> int:
        """This shard's part of ``n`` (concurrency, connections): as even as possible, summing to n."""
        q, r = divmod(n, self.count)
        return q + (1 if self.index < r else 0)

    def arrivals(self, times: Iterator[float]) -> Iterator[float]:
        """This shard's open-model arrivals: every ``count``-th of the plan's, from ``index``."""
        return times if self.count == 1 else islice(times, self.index, None, self.count)

    def users(self, pool: UserPool) -> UserPool:
        """This shard's users (a partition of the pool; ``min_ready`` scaled to the slice)."""
        if self.count == 1:
            return pool
        if len(pool) < self.count:
            raise ConfigError(
                f"{self.count} workers need at least {self.count} users (the pool has {len(pool)}): "
                "users are never shared between workers; give UserPool(count=...) >= the workers"
            )
        part = copy.copy(pool)
        part.users = tuple(
            type(u)(u.email, u.password, u.index) for u in pool.users[self.index :: self.count]
        )
        part.min_ready = max(1, math.ceil(pool.min_ready * len(part.users) / len(pool) - 1e-9))
        return part


class Channel(Protocol):
    """A blocking, two-way message pipe between a shard and its parent."""

    def send(self, msg: tuple[Any, ...]) -> None: ...

    def recv(self, timeout: float) -> tuple[Any, ...] | None:
        """The next message, or None after ``timeout`` seconds; raises EOFError when closed."""
        ...


class ShardLink:
    """The shard's side of its channel, inside the shard's event loop."""

    def __init__(self, shard: Shard, channel: Channel, wall_start_ns: int) -> None:
        self.shard = shard
        self.channel = channel
        self.wall_start_ns = wall_start_ns
        self.stop_reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start: asyncio.Future[int] | None = None
        self._abort: asyncio.Event | None = None
        self._cancel: Callable[[], object] | None = None
        self._closed = threading.Event()

    def clock(self) -> Clock:
        """A clock whose zero is the parent's run start (perf_counter precision, wall-clock anchor)."""
        clock = Clock()
        clock.t0 = time.perf_counter_ns() - (time.time_ns() - self.wall_start_ns)
        clock.wall_start_ns = self.wall_start_ns
        return clock

    def attach(self, abort: asyncio.Event, cancel: Callable[[], object]) -> None:
        """Start listening: "stop" sets ``abort`` (threshold breach) or calls ``cancel`` (interrupt)."""
        self._loop = asyncio.get_running_loop()
        self._abort, self._cancel = abort, cancel
        self._start = self._loop.create_future()
        threading.Thread(target=self._listen, name="taskforge-perf-shard-link", daemon=True).start()

    def _listen(self) -> None:
        loop = self._loop
        assert loop is not None
        while not self._closed.is_set():
            try:
                msg = self.channel.recv(0.2)
            except (EOFError, OSError):  # the parent is gone: stop and keep the rows
                msg = ("stop", "interrupted", True)
            if msg is None:
                continue
            try:
                loop.call_soon_threadsafe(self._on_message, msg)
            except RuntimeError:  # the loop is closed
                return
            if msg[0] == "stop" and msg[2]:
                return

    def _on_message(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "start" and self._start is not None and not self._start.done():
            self._start.set_result(int(msg[1]))
        elif kind == "stop":
            self.stop_reason = str(msg[1])
            if msg[2]:  # an interrupt: the same path as a cancelled run
                if self._start is not None and not self._start.done():
                    self._start.cancel()
                if self._cancel is not None:
                    self._cancel()
            elif self._abort is not None:
                self._abort.set()

    async def ready(self, setup_s: float, clock: Clock) -> int:
        """Tell the parent set-up is done; wait for the common load start and sleep until it."""
        self.send(("ready", self.shard.index, setup_s))
        assert self._start is not None
        start_ns = await self._start
        delay = (start_ns - clock.now()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        return start_ns

    def listener(self, snap: Any) -> None:
        """A monitor listener: each snapshot goes to the parent (the live view aggregates them)."""
        self.send(("snap", self.shard.index, snap))

    def send(self, msg: tuple[Any, ...]) -> None:
        try:
            self.channel.send(msg)
        except (OSError, ValueError, EOFError):  # the parent is gone; the rows are on disk
            pass

    def close(self) -> None:
        self._closed.set()
