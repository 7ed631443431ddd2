"""A small HTTP/1.1 keep-alive client for the load traffic (the hot path).

aiohttp's client costs ~50% of the generator's CPU per request (request and response objects,
header multidicts, URL handling, the connector's bookkeeping). The load traffic needs none of
that: the requests of a mix are known up front, so each one is a pre-built bytes template with
only the token and the body spliced in (``RequestTemplate``), written on a kept-alive connection
(an ``asyncio.Protocol``) whose response is framed by httptools' C parser (llhttp). The result is
the status, the body bytes and an error kind; nothing else is built. A request is either awaited
(``FastClient.request``) or, for the closed model's virtual users, started with a callback
(``FastClient.start``, then ``settle``; see ``engine.http_chain``): no future per request.

What stays with aiohttp (``engine.http`` decides per endpoint): auth and setup, redirects (the
first 3xx of an endpoint is followed through aiohttp, and that endpoint stays there), HEAD, and
anything a template cannot express. TLS is asyncio's (``create_connection(ssl=...)``).

Failures are error kinds, never exceptions, and there is no silent retry: a kept-alive
connection that the peer closed under a request is a "reset" row (aiohttp retries an idempotent
request once in that case).

Bodies are gathered as a list of chunks joined once (linear: a 100 MB body in about the time
aiohttp takes; appending bytes to bytes was quadratic, 32.7 s). A body larger than
``FastClient.max_body`` (``MAX_BODY_BYTES``, 256 MiB, by default) is not kept: the request ends
as a "protocol" row and the connection is closed.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import httptools

from taskforge_perf.engine.failures import classify
from taskforge_perf.engine.http_bytes import (  # re-exported: the fast client's public pieces
    Origin,
    RequestTemplate,
    header_value,
    redirect_location,
    task_id,
    template_for,
)

__all__ = [
    "MAX_BODY_BYTES",
    "PREOPEN_BATCH",
    "FastClient",
    "Origin",
    "RequestTemplate",
    "connect_error",
    "header_value",
    "redirect_location",
    "task_id",
    "template_for",
]

#: Default largest response body the fast client keeps (bytes); bigger: a "protocol" row.
MAX_BODY_BYTES = 256 * 1024 * 1024
#: Connections ``FastClient.preopen`` opens at once.
PREOPEN_BATCH = 128
#: ``_Conn.waiter`` of a request started by ``FastClient.start``: its end calls ``_Conn.notify``
#: instead of resolving a future (no future, no task step per response).
_CALLBACK: Any = object()


def connect_error(exc: BaseException) -> str:
    """Error kind of a failure while connecting (the fast client's side of ``classify``)."""
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, OSError) and exc.errno in (
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    ):
        return "refused"
    return classify(exc)


def _text(exc: BaseException) -> str:
    """``Type: message`` of a failure (error path only)."""
    return f"{type(exc).__name__}: {exc}"


class _Conn(asyncio.Protocol):
    """One kept-alive connection; at most one request in flight (no pipelining)."""

    __slots__ = (
        "client",
        "transport",
        "parser",
        "waiter",
        "status",
        "body",
        "parts",
        "size",
        "error",
        "detail",
        "timer",
        "deadline",
        "closed",
        "keep",
        "head",
        "loop",
        "notify",
        "feeding",
        "due",
        "max_body",
    )

    def __init__(self, client: FastClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.max_body = client.max_body  # read per body chunk
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.body = b""
        self.parts: list[bytes] | None = None  # the chunks of a body that came in several
        self.size = 0
        self.error: str | None = None
        self.detail = ""  # the failure's text, set with ``error`` (error path only)
        # One timer per connection, re-armed lazily: a request only stores its deadline (a
        # TimerHandle per request cost ~6% of the CPU); the timer fires at most once per
        # timeout period and then either times the request out or moves to its deadline.
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0
        self.closed = False
        self.keep = True
        self.head = b""  # the response's first chunk, kept for a redirect's Location only
        # Callback mode (``FastClient.start``): called with the connection when the request ends;
        # deferred while the parser runs (``feeding``/``due``), so that the next request is never
        # written from inside the parser's callbacks.
        self.notify: Callable[[_Conn], None] | None = None
        self.feeding = False
        self.due = False

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self._finish("protocol", close=True)
            return
        if not self.head:
            self.head = data
        self.feeding = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.detail = "the target switched protocols (upgrade) on a plain request"
            self._finish("protocol", close=True)
        except httptools.HttpParserError as exc:
            self.detail = _text(exc)
            self._finish("protocol", close=True)
        finally:
            self.feeding = False
        if self.due:
            self.due = False
            notify = self.notify
            self.notify = None
            if notify is not None:
                notify(self)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        self.client.open_connections -= 1
        if self.waiter is not None:
            if exc is None and self._framed_by_eof():
                self.status = self.parser.get_status_code()
                self.keep = False
                self._join()
                self._finish(None)
            elif exc is None:
                self.detail = "the target closed the connection before a complete answer"
                self._finish("reset")
            else:
                self.detail = _text(exc)
                if isinstance(exc, ConnectionResetError | BrokenPipeError):
                    self._finish("reset")
                elif isinstance(exc, ssl.SSLError):
                    self._finish("tls")
                else:
                    kind = classify(exc)
                    self._finish("reset" if kind == "other" else kind)

    def _framed_by_eof(self) -> bool:
        """A response whose body ends with the connection (no length, not chunked) is complete
        at EOF; one with a Content-Length that the peer cut short is a reset."""
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = self.head[:end].lower()
        return b"\ncontent-length:" not in head and b"\ntransfer-encoding:" not in head

    # --- httptools callbacks -------------------------------------------------------------------

    def on_body(self, chunk: bytes) -> None:
        if self.waiter is None:
            return  # already finished (a body over the limit): ignore the rest
        self.size += len(chunk)
        if self.size > self.max_body:
            self.body, self.parts = b"", None
            self.detail = f"response body over the client's limit of {self.client.max_body:,} bytes"
            self._finish("protocol", close=True)
            return
        if not self.body:
            self.body = chunk
        elif self.parts is None:  # a second chunk: gather, join once at the end (linear)
            self.parts = [self.body, chunk]
        else:
            self.parts.append(chunk)

    def _join(self) -> None:
        if self.parts is not None:
            self.body = b"".join(self.parts)
            self.parts = None

    def on_message_complete(self) -> None:
        if self.waiter is None:
            return
        status = self.parser.get_status_code()
        if status < 200 and status != 101:  # an interim answer (103 Early Hints): keep waiting
            self.body, self.parts, self.size = b"", None, 0
            return
        if self.parts is not None:  # (_join, inlined: once per response)
            self.body = b"".join(self.parts)
            self.parts = None
        self.status = status
        self.keep = self.parser.should_keep_alive()
        # _finish(None), inlined; always inside feed_data, so a callback is only marked due.
        waiter = self.waiter
        self.waiter = None
        if waiter is _CALLBACK:
            if self.notify is not None:
                self.due = True
        elif not waiter.done():
            waiter.set_result(None)

    # --- requests ------------------------------------------------------------------------------

    def _finish(self, error: str | None, close: bool = False) -> None:
        if error is not None:
            if self.waiter is not None:  # never overwrite the outcome of a finished request
                self.error = error
            close = True
        waiter = self.waiter
        self.waiter = None
        if close:
            self.abort()
        if waiter is _CALLBACK:
            if self.notify is not None:
                if self.feeding:
                    self.due = True  # data_received calls it once the parser has returned
                else:
                    notify = self.notify
                    self.notify = None
                    notify(self)
        elif waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_timer(self) -> None:
        self.timer = None
        if self.waiter is None or self.closed:
            return  # idle: the next request arms it again
        loop = self.loop
        if loop.time() >= self.deadline:
            self.detail = f"no complete answer within {self.client.timeout:g} s (read timeout)"
            self._finish("timeout")
        else:
            self.timer = loop.call_at(self.deadline, self.on_timer)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def abort(self) -> None:
        """Drop the connection at once (timeouts, garbage, cancellation)."""
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()


class FastClient:
    """Kept-alive connections to one origin and ``request(bytes)`` -> (status, body, error).

    The pool is LIFO: a closed-model run keeps one connection per virtual user busy, an open-model
    run grows it to the number of requests in flight (bounded by the driver's in-flight cap).

    >>> client = FastClient("http://127.0.0.1:8080", timeout=10.0)  # doctest: +SKIP
    >>> status, body, error = await client.request(template.build(token, body))  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        connect_timeout: float | None = None,
        ssl_context: ssl.SSLContext | bool | None = None,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.origin = Origin(base_url)
        #: Largest response body kept (bytes); a bigger one ends the request as "protocol".
        self.max_body = max_body
        self.timeout = timeout
        self.connect_timeout = connect_timeout if connect_timeout is not None else timeout
        self.ssl: ssl.SSLContext | None = None
        if self.origin.scheme == "https":
            if isinstance(ssl_context, ssl.SSLContext):
                self.ssl = ssl_context
            elif ssl_context is False:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self.ssl = ctx
            else:
                self.ssl = ssl.create_default_context()
        self._idle: collections.deque[_Conn] = collections.deque()
        self._busy: set[_Conn] = set()
        self.open_connections = 0
        self.connections_made = 0
        #: Connections a request had to open because the idle pool was empty.
        self.opened_on_demand = 0
        self.last_head = b""
        #: The text of the last failed request's error (read by the caller at once, on its error
        #: path; "" when the client knows no more than the kind).
        self.last_error = ""
        self._closed = False

    def template(
        self, method: str, path: str, headers: Mapping[str, str], *, auth: bool
    ) -> RequestTemplate | None:
        """The request template of an endpoint (None: the endpoint goes through aiohttp)."""
        return template_for(method, path, headers, self.origin, auth=auth)

    async def _connect(self, deadline: float) -> _Conn | str:
        loop = asyncio.get_running_loop()
        o = self.origin
        wait = min(self.connect_timeout, deadline - loop.time())
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Conn(self, loop),
                    o.host,
                    o.port,
                    ssl=self.ssl,
                    server_hostname=o.host if self.ssl is not None else None,
                ),
                max(wait, 0.0),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a kind
            kind = connect_error(exc)
            self.last_error = (
                _text(exc) if str(exc) else f"{type(exc).__name__}: no connection within {max(wait, 0.0):g} s"
            )
            return kind
        self.open_connections += 1
        self.connections_made += 1
        if self._closed:
            conn.abort()
            self.last_error = ""
            return "cancelled"
        return conn

    async def preopen(self, count: int, batch: int = PREOPEN_BATCH) -> int:
        """Open connections until ``count`` are idle in the pool (before a schedule starts, so
        its first requests find them open); ``batch`` connects at a time, to stay under the
        target's listen backlog. Returns how many were opened (failures are not rows: the
        requests that find the pool empty open their own, as before)."""
        loop = asyncio.get_running_loop()
        opened = 0
        while len(self._idle) < count and not self._closed:
            need = min(count - len(self._idle), batch)
            deadline = loop.time() + self.connect_timeout
            made = await asyncio.gather(*(self._connect(deadline) for _ in range(need)))
            conns = [c for c in made if isinstance(c, _Conn)]
            self._idle.extend(conns)
            opened += len(conns)
            if len(conns) < need:
                break  # refused or timed out: the target's limit, not ours to push past
        return opened

    async def request(self, data: bytes) -> tuple[int, bytes, str | None]:
        """Send one request on a kept-alive connection: (status, body, error kind or None)."""
        conn = self.take()
        if conn is None:
            self.opened_on_demand += 1
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout  # the connect counts towards the timeout
            made = await self._connect(deadline)
            if isinstance(made, str):
                return 0, b"", made
            conn = made
        else:
            # The connection's own loop: asyncio.get_running_loop() costs a getpid() system
            # call per request on Python 3.11 (~1.4% of the generator's busy time).
            loop = conn.loop
            deadline = loop.time() + self.timeout
        fut = loop.create_future()
        self._write(conn, data, fut, deadline)  # a failed write resolves fut ("reset")
        try:
            await fut
        except asyncio.CancelledError:
            conn._finish("cancelled")
            self._busy.discard(conn)
            raise
        return self.settle(conn)

    def take(self) -> _Conn | None:
        """An open idle connection from the pool (LIFO), or None (``request`` opens one)."""
        idle = self._idle
        while idle:
            c = idle.pop()
            if not c.closed:
                return c
        return None

    def give_back(self, conn: _Conn) -> None:
        """Return to the pool a connection from ``take`` (or kept after ``settle``'s common
        case, still in the busy set) that has no request in flight."""
        self._busy.discard(conn)
        if conn.closed:
            return
        if self._closed:
            conn.abort()
        else:
            self._idle.append(conn)

    def start(self, conn: _Conn, data: bytes, notify: Callable[[_Conn], None]) -> bool:
        """Send ``data`` on ``conn`` (from ``take``) without a future: ``notify(conn)`` is called
        when the request ends (answered, failed, timed out), never from inside the parser, and
        ``settle(conn)`` gives its result. False: it ended at once (the write failed) and
        ``notify`` will not be called: settle it now. To abandon it (cancellation): set
        ``conn.notify = None``, then ``conn._finish("cancelled")`` and ``settle(conn)``."""
        conn.notify = None
        if not self._write(conn, data, _CALLBACK, conn.loop.time() + self.timeout):
            return False
        if conn.waiter is None:  # ended during the write
            return False
        conn.notify = notify
        return True

    def _write(self, conn: _Conn, data: bytes, waiter: Any, deadline: float) -> bool:
        """Start a request on ``conn``: reset its state, arm its timer, mark it busy, write
        ``data``. False when the write failed (the request then ended as "reset")."""
        conn.waiter = waiter
        conn.status = 0
        conn.body = conn.head = b""
        conn.parts, conn.size = None, 0
        conn.error = None
        conn.deadline = deadline
        if conn.timer is None:
            conn.timer = conn.loop.call_at(deadline, conn.on_timer)
        self._busy.add(conn)
        try:
            conn.transport.write(data)  # type: ignore[union-attr]
        except (RuntimeError, OSError) as exc:  # closed under us since the pool handed it out
            conn.detail = _text(exc)
            conn._finish("reset")
            return False
        return True

    def settle(self, conn: _Conn) -> tuple[int, bytes, str | None]:
        """The result of a finished request; the connection goes back to the pool (or closes)."""
        self._busy.discard(conn)
        if conn.error is not None:
            self.last_error, conn.detail = conn.detail, ""
            return conn.status, conn.body, conn.error
        status = conn.status
        if 300 <= status < 400 or status == 429 or status == 503:
            self.last_head = conn.head  # read by the caller at once (redirects, Retry-After)
        if conn.keep and not conn.closed and not self._closed:
            self._idle.append(conn)
        elif not conn.closed:  # "Connection: close" (or we are shutting down): close gracefully
            conn.closed = True
            conn._stop_timer()
            conn.transport.close()  # type: ignore[union-attr]
        return status, conn.body, None

    def close(self) -> None:
        """Close every connection (idle ones gracefully, busy ones at once)."""
        self._closed = True
        while self._idle:
            c = self._idle.pop()
            c._stop_timer()
            if c.transport is not None and not c.closed:
                c.closed = True
                c.transport.close()
        for c in list(self._busy):
            c._finish("cancelled")
        self._busy.clear()
