"""The WebSocket driver's client socket: frames handed to the driver as they are parsed, sends
without a task per frame.

At 10,000 sockets the per-message and per-socket machinery of a plain websockets client was the
tester's largest cost. ``Socket`` is a ``ClientConnection`` (``connect(create_connection=Socket)``)
whose data frames go straight to a callback instead of through websockets' message queue, a
future and a reader coroutine chain per socket. That chain allocated ~4 objects per message that
stayed alive until the socket's next message (~5,000-20,000 young objects per collector pass at
10,000 sockets, 3-18 ms each) and held ~1 KB per socket while waiting; the driver's reader now
only waits for the close (``wait_closed``). The handshake's headers are dropped once open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode

#: ``handler(conn, payload)``: a text frame as ``str``, a binary frame (or text that is not UTF-8)
#: as ``bytes``.
Handler = Callable[[Any, "str | bytes"], None]


class Socket(ClientConnection):
    """A client connection that hands each whole data frame to a handler as it is parsed.

    Frames that arrive before ``start`` (in the handshake's last read) are kept and handed over
    by ``start``. A fragmented message is joined first. Text that is not UTF-8 is handed over as
    bytes (the driver records an ``unparsable`` frame) instead of failing the connection (1007).
    """

    # Slots, not __dict__ entries: a ClientConnection's __dict__ holds 26 keys shared with its
    # class (280 B); one more key made it a dict of its own (1,584 B per socket).
    __slots__ = ("_handler", "_conn", "_early", "_parts", "_parts_text", "_closed")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The two attributes connection_made() adds, created here so that every socket's __dict__
        # gets all its keys at creation: with hundreds of handshakes in flight, keys added later
        # turned each __dict__ into one of its own (1,584 B instead of 280).
        self.recv_messages = _NO_QUEUE  # type: ignore[assignment]
        self.transport = None  # type: ignore[assignment]
        # websockets only appends, iterates and removes its drain waiters: a list is ~700 B smaller
        # per socket than a deque.
        self.drain_waiters = []  # type: ignore[assignment]
        self._handler: Handler | None = None
        self._conn: Any = None
        self._early: list[str | bytes] | None = None  # frames before start()
        self._parts: list[bytes] | None = None  # a fragmented message so far
        self._parts_text = False
        self._closed: asyncio.Future[None] | None = None

    def start(self, handler: Handler, conn: Any) -> None:
        """From now on every data frame goes to ``handler(conn, payload)``; frees the handshake and
        websockets' message queue (no frame goes there any more, ~1 KB per socket)."""
        self._handler, self._conn = handler, conn
        if self.request is not None:
            self.request = None
        if self.response is not None:
            self.response.headers.clear()  # the response itself marks the handshake as done
        self.recv_messages = _NO_QUEUE  # type: ignore[assignment]
        early, self._early = self._early, None
        for payload in early or ():
            self._deliver(payload)

    def process_event(self, event: Any) -> None:
        if self.response is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake
            return
        op = event.opcode
        if op is Opcode.TEXT or op is Opcode.BINARY:
            if not event.fin:
                self._parts, self._parts_text = [bytes(event.data)], op is Opcode.TEXT
                return
            data, text = event.data, op is Opcode.TEXT
        elif op is Opcode.CONT and self._parts is not None:
            self._parts.append(bytes(event.data))
            if not event.fin:
                return
            data, text, self._parts = b"".join(self._parts), self._parts_text, None
        else:
            super().process_event(event)  # pings, pongs, closes
            if op is Opcode.CLOSE:  # the server should now close TCP: bounded, as recv() would
                self.loop.call_later(self.close_timeout or 2.0, self._abort_if_open)
            return
        payload: str | bytes
        if text:
            try:
                payload = str(data, "utf-8")
            except UnicodeDecodeError:
                payload = bytes(data)
        else:
            payload = bytes(data)
        if self._handler is None:
            if self._early is None:
                self._early = []
            self._early.append(payload)
        else:
            self._deliver(payload)

    def closed(self) -> asyncio.Future[None]:
        """A future done once the TCP connection is closed; cancelling it affects nothing else
        (``wait_closed`` shields websockets' own future: ~700 B more per waiting socket)."""
        if self._closed is None:
            self._closed = self.loop.create_future()
            if self.connection_lost_waiter.done():
                self._closed.set_result(None)
        return self._closed

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        closed = self._closed
        if closed is not None and not closed.done():
            closed.set_result(None)

    def _abort_if_open(self) -> None:
        if not self.connection_lost_waiter.done():
            self.transport.abort()

    def _deliver(self, payload: str | bytes) -> None:
        assert self._handler is not None
        try:
            self._handler(self._conn, payload)
        except Exception:  # noqa: BLE001 - as a failing reader would: the socket closes, a close row
            self.transport.abort()


class _NoQueue:
    """Stands for websockets' message queue once frames go to the handler."""

    def close(self) -> None:
        pass

    def put(self, frame: Frame) -> None:  # pragma: no cover - every data frame goes to the handler
        raise RuntimeError("Socket frames go to the handler given to start()")

    async def get(self, decode: bool | None = None) -> Any:
        raise RuntimeError("Socket frames go to the handler given to start(), not to recv()")


_NO_QUEUE = _NoQueue()


def send_now(ws: Any, text: str) -> Any:
    """Start ``ws.send(text)``; None when it finished at once, else a coroutine that finishes it.

    ``send`` finishes without suspending unless the write buffer is full or the socket is
    closing: run to its first suspension here, only one that suspends needs a task. A task, its
    step and its done callback per frame cost ~3 µs of ~17 (client CPU per send, 100 sockets,
    uvloop, medians of 9 rounds: 17.4 -> 14.3 µs). A failed send (closed socket) is dropped: the
    socket's reader records the close.
    """
    coro = ws.send(text)
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    except Exception:  # noqa: BLE001 - closed socket: its reader records the close
        return None
    return _finish_send(coro, waiting)


async def _finish_send(coro: Any, waiting: Any) -> None:
    """Drive a started ``ws.send`` coroutine to its end as its task would.

    ``waiting`` is what it yielded: None (a bare yield) or the future it waits on.
    """
    try:
        while True:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                waiting._asyncio_future_blocking = False
                await asyncio.wait((waiting,))
            waiting = coro.send(None)
    except StopIteration:
        return
    except asyncio.CancelledError:
        try:
            coro.throw(asyncio.CancelledError())
        except BaseException:  # noqa: BLE001 - it ends either way
            pass
        raise
