"""The relay of a ``Region`` (``taskforge_perf.regions``), run as its own process.

``python -m taskforge_perf.region_relay --fd N --upstream HOST:PORT --delay S [--jitter S]
[--bandwidth BYTES_PER_S]`` serves the inherited listening socket ``N``: each connection is
forwarded to the upstream, every chunk of bytes held ``delay`` s (+- ``jitter``, order kept) and
paced to the bandwidth, in each direction. It prints ``ready`` once it serves and runs until
terminated. A process of its own: neither the tester's event loop nor its GIL delays a delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import socket
import sys
from collections.abc import Sequence

_CHUNK = 256 * 1024
#: A delivery already this late when its turn came is a backlog, not a wake-up to learn from.
_GUARD_S = 0.0015
#: The lead on wake-ups moves by this much per delivery (a running median of their lateness).
_STEP = 0.00005
_MAX_LEAD = 0.005


class Relay:
    """Forward connections of ``sock`` to ``upstream`` with a delay, jitter and bandwidth."""

    def __init__(
        self,
        upstream: tuple[str, int],
        delay: float,
        jitter: float,
        bw: float | None,
        seed: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.delay, self.jitter, self.bw = delay, jitter, bw
        self._rng = random.Random(seed)
        self._late = 0.0  # seconds: how much earlier than due the relay aims its wake-ups

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay one connection both ways until either side closes."""
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        for w in (writer, up_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        except asyncio.CancelledError:  # the relay is stopping: end quietly
            for w in (writer, up_w):
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        delay, jitter, bw, rng = self.delay, self.jitter, self.bw, self._rng
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            free_at = 0.0
            try:
                while True:
                    at, data = await queue.get()
                    if not data:
                        return
                    if bw is not None:  # serialisation on a link of bw bytes/s
                        at = max(at, free_at) + len(data) / bw
                        free_at = at
                    # Wake-ups come late on a busy machine: aim early by the running median of
                    # how late they were, so the delivered delay is right in the median.
                    # (No blocking sleep: it would hold up every other chunk's read.)
                    wait = at - self._late - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if wait > -_GUARD_S:  # a wait that was planned (not a backlog): learn from it
                        late = loop.time() - at
                        self._late = min(max(self._late + (_STEP if late > 0 else -_STEP), 0.0), _MAX_LEAD)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        out = asyncio.ensure_future(deliver())
        last = 0.0
        try:
            while data := await reader.read(_CHUNK):
                at = loop.time() + delay + (rng.uniform(-jitter, jitter) if jitter else 0.0)
                last = at = max(at, last)  # a byte stream keeps its order
                queue.put_nowait((at, data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait((0.0, b""))
            await out


async def serve(sock: socket.socket, relay: Relay) -> None:
    """Serve until SIGTERM."""
    server = await asyncio.start_server(relay.connection, sock=sock, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the relay process."""
    p = argparse.ArgumentParser(prog="taskforge_perf.region_relay")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--bandwidth", type=float, default=None)
    args = p.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    asyncio.run(serve(sock, Relay((host, int(port)), args.delay, args.jitter, args.bandwidth)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
