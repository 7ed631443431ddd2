"""Closed-model virtual users on the fast client without a future or a task step per request.

A virtual user's common request (an endpoint with a request template, a fresh token or none, an
idle kept-alive connection, no think time) is sent by a ``FastChain``: the connection calls it
back when the answer is in (``FastClient.start``), it records the row and writes the user's next
request from that callback, as wrk does. The asyncio future, the task step that resumes the
user and the three coroutine frames of ``HttpDriver.send`` -> ``FastClient.request`` per request
are gone (about a third of the generator's user-space instructions per request).

Anything unusual ends the chain and the virtual user's coroutine goes on with the driver's own
code (``HttpDriver.send``): an endpoint without a template (yet), a token to renew, no idle
connection (a connect), a request that cannot be built, a 401 (re-authentication), a redirect,
a 429/503 (Retry-After), think time, and the run stopping or the level dropping. Cancelling the
virtual user records the request in flight as "cancelled", as ``HttpDriver.send`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from taskforge_perf.engine.fastclient import FastClient, _Conn, header_value
from taskforge_perf.engine.http_bytes import REDIRECTS as _REDIRECTS
from taskforge_perf.mix import Endpoint, RequestMix
from taskforge_perf.users import User

if TYPE_CHECKING:
    from taskforge_perf.engine.http import HttpDriver

_DONE, _SEND, _REAUTH, _REDIRECT = range(4)


class FastChain:
    """One closed-model virtual user's requests on the fast client, driven by callbacks."""

    __slots__ = (
        "drv",
        "index",
        "mix",
        "pick",
        "fut",
        "ep",
        "user",
        "ti",
        "t0",
        "nout",
        "token",
        "body",
        "client",
        "conn",
        "open",
        "c0",
        "done_cb",
        "spare",
        "state",
        "counters",
        "record",
    )

    def __init__(self, driver: HttpDriver, index: int, mix: RequestMix, pick: Callable[[], User]) -> None:
        self.drv = driver
        self.index = index
        self.mix = mix
        self.pick = pick
        self.fut: asyncio.Future[tuple[Any, ...]] | None = None
        # The request in flight, or answered and not recorded yet (``open``).
        self.ep: Endpoint | None = None
        self.user: User | None = None
        self.ti = self.t0 = self.nout = 0
        self.token: str | None = None
        self.body: bytes | None = None
        self.client: FastClient | None = None
        self.conn: _Conn | None = None
        self.open = False
        self.c0 = driver.clock.t0  # clock.now() inlined: perf_counter_ns() - c0
        self.done_cb = self._step  # one bound method, not one per request
        # The kept-alive connection that answered the last request, held for the next one (still
        # in its client's busy set, so FastClient.close() closes it); back to the pool when the
        # chain ends or the next request goes to another client.
        self.spare: _Conn | None = None
        # The driver's parts read per request, taken once (one attribute load less each).
        self.state = driver.state
        self.counters = driver.counters
        self.record = driver.recorder.record

    async def run(self, intended: int) -> float:
        """Send this user's requests until one needs the coroutine; returns what the last
        ``HttpDriver.send`` returned (the pause before the next request, normally 0.0)."""
        fut = self.fut = asyncio.get_running_loop().create_future()
        self.ti = intended
        self._step(None)
        try:
            r = await fut
        except asyncio.CancelledError:
            self._abandon()
            raise
        finally:
            spare = self.spare
            if spare is not None:
                self.spare = None
                spare.client.give_back(spare)
        kind = r[0]
        if kind == _DONE:
            return float(r[1])
        drv = self.drv
        if kind == _SEND:  # this request needs the driver's own path (connect, token, template)
            return await drv._send(r[1], r[2], r[3], True, None)
        if kind == _REAUTH:  # a 401, recorded: re-authenticate and retry once (as send does)
            if drv.state.stopping:
                return 0.0
            drv.counters.reauths += 1
            await drv.auth.reauth(r[2], r[3])
            return await drv._send(r[1], r[2], drv.clock.now(), False, None)
        return await self._redirect(r[1], r[2])

    # --- callbacks -----------------------------------------------------------------------------

    def _end(self, result: tuple[Any, ...]) -> None:
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result(result)

    def _step(self, conn: _Conn | None) -> None:
        """The connection's callback: record the request that ended, then start the next one
        (or end the chain when it needs the coroutine). ``conn`` None: the chain's first
        request (from ``run``, its intended start time in ``ti``)."""
        try:
            drv = self.drv
            if conn is None:
                intended = self.ti
            else:  # the request on conn ended: record it
                t1 = perf_counter_ns() - self.c0
                if conn is not self.conn:
                    return  # a stale call (the request was abandoned meanwhile)
                client: FastClient = self.client  # type: ignore[assignment]  # set with conn
                ep: Endpoint = self.ep  # type: ignore[assignment]
                user: User = self.user  # type: ignore[assignment]
                self.conn = None
                status = conn.status
                if (
                    conn.error is None
                    and status < 300
                    and conn.keep
                    and not conn.closed
                    and not client._closed
                ):
                    # FastClient.settle's common case: the connection is kept as spare.
                    self.spare = conn
                    counters = self.counters
                    counters.in_flight -= 1
                    self.open = False
                    if ep.creates_task:
                        drv._outcome(ep, user, self.ti, self.t0, t1, status, None, conn.body, self.nout, None)
                    else:  # HttpDriver._outcome of a plain success (no error kind, no task id), inlined
                        self.record(
                            self.ti,
                            self.t0,
                            t1,
                            status,
                            None,
                            len(conn.body),
                            self.nout,
                            ep.name,
                            ep.method,
                            user.email,
                            self.state.phase,
                            None,
                            user.group,
                            user.session,
                        )
                        counters.requests += 1
                elif self._settled(conn, client, ep, user, t1):
                    return  # the chain ended (redirect, re-authentication, Retry-After)
                if self.fut.done():  # type: ignore[union-attr]  # (cancelled meanwhile)
                    return
                intended = perf_counter_ns() - self.c0
            state, rng = self.state, drv.rng
            if self.index >= state.level or state.stopping or intended > drv.end_ns or state.think_time > 0:
                self._end((_DONE, 0.0))
                return
            ep = self.mix.pick(rng)
            user = self.pick()
            tmpl = drv._templates.get(id(ep))
            if tmpl is None:  # not built yet, or aiohttp's
                self._end((_SEND, ep, user, intended))
                return
            token = None
            if ep.auth:
                token = user.fresh_token()
                if token is None:  # renewal: the driver's path
                    self._end((_SEND, ep, user, intended))
                    return
            client = user.via if user.via is not None else drv.fast  # type: ignore[assignment]
            conn = self.spare
            if conn is not None:
                self.spare = None
                if conn.client is not client or conn.closed:
                    conn.client.give_back(conn)
                    conn = client.take()
            else:
                conn = client.take()
            if conn is None:  # a connect: the driver's path
                self._end((_SEND, ep, user, intended))
                return
            try:
                if ep.build is None:  # no body (Endpoint.body would say None)
                    body = None
                    data = tmpl.bare if token is None else tmpl.build(token, None)
                else:
                    body = ep.body(user.email, token, rng)
                    data = tmpl.build(token, body)
            except Exception as exc:  # noqa: BLE001 - a request that cannot be built is a row
                client.give_back(conn)
                self._end((_DONE, drv._client_error(ep, user, intended, exc, None)))
                return
            self.ep, self.user, self.ti, self.token, self.body = ep, user, intended, token, body
            self.nout = len(body) if body is not None else 0
            self.client, self.conn, self.open = client, conn, True
            self.counters.in_flight += 1
            self.t0 = perf_counter_ns() - self.c0
            if not client.start(conn, data, self.done_cb):
                # It ended at once (the write failed): settled on the next loop turn, as if the
                # connection had called back (no recursion however many connections fail).
                conn.loop.call_soon(self.done_cb, conn)
        except Exception as exc:  # noqa: BLE001 - raised in the user's coroutine, as send would
            fut = self.fut
            if fut is not None and not fut.done():
                fut.set_exception(exc)

    def _settled(self, conn: _Conn, client: FastClient, ep: Endpoint, user: User, t1: int) -> bool:
        """Record an answer off the common path (an error, a 3xx/4xx/5xx, a closing connection);
        True when it ended the chain (a redirect, a 401 to re-authenticate, a 429/503)."""
        drv = self.drv
        status, raw, err = client.settle(conn)
        if err is None and 300 <= status < 400 and status in _REDIRECTS:
            self._end((_REDIRECT, status, client.last_head))
            return True
        self.counters.in_flight -= 1
        self.open = False
        if err is not None:
            status, raw = 0, b""
            if drv._detail is None:  # the error sample's text (as HttpDriver._send_fast)
                drv._detail = client.last_error
        if drv._outcome(ep, user, self.ti, self.t0, t1, status, err, raw, self.nout, None):
            self._end((_REAUTH, ep, user, self.token))
            return True
        if status == 429 or status == 503:
            self._end((_DONE, drv._retry_pause(header_value(client.last_head, b"retry-after"))))
            return True
        return False

    # --- the coroutine's side ------------------------------------------------------------------

    def _abandon(self) -> None:
        """The virtual user was cancelled: the request in flight becomes a "cancelled" row."""
        conn, client = self.conn, self.client
        if conn is not None and client is not None:
            self.conn = None
            conn.notify = None
            conn._finish("cancelled")
            client.settle(conn)
        if self.open:
            self.open = False
            drv = self.drv
            drv.counters.in_flight -= 1
            now = drv.clock.now()
            drv._record(self.ti, self.t0, now, 0, "cancelled", 0, self.nout, self.ep, self.user, None)  # type: ignore[arg-type]

    async def _redirect(self, status: int, head: bytes) -> float:
        """A 3xx on the fast path: the rest of ``HttpDriver._send_fast`` for it."""
        drv = self.drv
        clock, counters = drv.clock, drv.counters
        ep, user, token = self.ep, self.user, self.token
        assert ep is not None and user is not None and self.client is not None
        try:
            status, raw, err = await drv._follow_redirect(ep, status, head, token, self.body)
        except asyncio.CancelledError:
            self._abandon()
            raise
        t1 = clock.now()
        counters.in_flight -= 1
        self.open = False
        if err is not None:
            status, raw = 0, b""
            if drv._detail is None:  # else the redirect's own failure (_follow_redirect)
                drv._detail = self.client.last_error
        if (
            drv._outcome(ep, user, self.ti, self.t0, t1, status, err, raw, self.nout, None)
            and not drv.state.stopping
        ):
            counters.reauths += 1
            await drv.auth.reauth(user, token)
            return await drv._send(ep, user, clock.now(), False, None)
        if status == 429 or status == 503:
            return drv._retry_pause(header_value(self.client.last_head, b"retry-after"))
        return 0.0
