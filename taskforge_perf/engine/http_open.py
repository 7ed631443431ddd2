"""Open-model requests on the fast client without a task, coroutines or a future per request.

An open-model arrival whose request is common (an endpoint with a request template, a fresh token
or none, an idle kept-alive connection) is written at once by ``OpenFast.start`` from the
schedule's own turn, and the connection calls ``OpenFast._done`` back when the answer is in: it
records the row, starts the arrivals that have come due and hands its in-flight slot on to the
next queued arrival (``HttpDriver._continue``). The asyncio task, the three coroutine frames of
``HttpDriver._open_request`` -> ``send`` -> ``FastClient.request``, the future and the task
steps per request are gone, and so is the loop turn between an arrival's timer and its write (the
open model's start lateness).

Anything unusual goes to the driver's coroutine instead (``start`` returns False and nothing is
sent): an endpoint without a template (yet), a token to renew, no idle connection (a connect), a
request that cannot be built. An answer that needs a coroutine after the fact (a redirect to
follow, a 401 to re-authenticate and retry once) is finished by a task, as ``send`` would.
"""

from __future__ import annotations

import asyncio
from time import perf_counter_ns
from typing import TYPE_CHECKING

from taskforge_perf.engine.fastclient import FastClient, _Conn, header_value
from taskforge_perf.engine.http_bytes import REDIRECTS as _REDIRECTS
from taskforge_perf.mix import Endpoint
from taskforge_perf.users import User

if TYPE_CHECKING:
    from taskforge_perf.engine.http import HttpDriver


#: A request in flight: intended start, phase, endpoint, user, token, body, start, client.
_Req = tuple[int, str, Endpoint, User, "str | None", "bytes | None", int, FastClient]


class OpenFast:
    """The open model's requests in flight on the fast client, driven by callbacks."""

    __slots__ = ("drv", "live", "done_cb", "c0", "quiet")

    def __init__(self, driver: HttpDriver) -> None:
        self.drv = driver
        #: Requests in flight by connection (each connection carries at most one).
        self.live: dict[_Conn, _Req] = {}
        self.done_cb = self._done  # one bound method, not one per request
        self.c0 = driver.clock.t0  # clock.now() inlined: perf_counter_ns() - c0
        #: Set when the last request in flight ends (``drain`` waits on it).
        self.quiet: asyncio.Future[None] | None = None

    def start(self, ti: int, phase: str, ep: Endpoint, user: User) -> bool:
        """Write this arrival's request now; False: it needs the driver's coroutine (not sent)."""
        drv = self.drv
        tmpl = drv._templates.get(id(ep))
        if tmpl is None:  # not built yet, or aiohttp's
            return False
        token = None
        if ep.auth:
            token = user.fresh_token()
            if token is None:  # renewal: the driver's path
                return False
        client = user.via if user.via is not None else drv.fast
        assert client is not None
        conn = client.take()
        if conn is None:  # a connect: the driver's path
            return False
        try:
            if ep.build is None:  # no body (Endpoint.body would say None)
                body = None
                data = tmpl.bare if token is None else tmpl.build(token, None)
            else:
                body = ep.body(user.email, token, drv.rng)
                data = tmpl.build(token, body)
        except Exception:  # noqa: BLE001 - the driver's path records it as a "client" row
            client.give_back(conn)
            return False
        drv.counters.in_flight += 1
        self.live[conn] = (ti, phase, ep, user, token, body, perf_counter_ns() - self.c0, client)
        if not client.start(conn, data, self.done_cb):
            # It ended at once (the write failed): settled on the next loop turn, as if the
            # connection had called back (no recursion however many connections fail).
            conn.loop.call_soon(self.done_cb, conn)
        return True

    def _done(self, conn: _Conn) -> None:
        """The connection's callback: record the request, then pass its slot on."""
        req = self.live.pop(conn, None)
        if req is None:
            return  # abandoned meanwhile (drain): already recorded as "cancelled"
        t1 = perf_counter_ns() - self.c0
        drv = self.drv
        ti, phase, ep, user, token, body, t0, client = req
        try:
            status, raw, err = client.settle(conn)
            if err is None and 300 <= status < 400 and status in _REDIRECTS:
                drv._spawn(self._redirect(req, status, client.last_head))
                return
            drv.counters.in_flight -= 1
            if err is not None:
                status, raw = 0, b""
                if drv._detail is None:  # the error sample's text (as HttpDriver._send_fast)
                    drv._detail = client.last_error
            nout = len(body) if body is not None else 0
            if err is None and status < 300 and not ep.creates_task:
                # HttpDriver._outcome of a plain success (no error kind, no task id), inlined.
                drv.recorder.record(
                    ti, t0, t1, status, None, len(raw), nout, ep.name, ep.method, user.email, phase, None,
                    user.group, user.session,
                )  # fmt: skip
                drv.counters.requests += 1
            elif drv._outcome(ep, user, ti, t0, t1, status, err, raw, nout, phase) and not drv.state.stopping:
                drv._spawn(self._reauth(ep, user, token, phase))
                return
            if status == 429 or status == 503:  # counted; the open model keeps its schedule
                drv._retry_pause(header_value(client.last_head, b"retry-after"))
        except Exception as exc:  # noqa: BLE001 - reported as a failed request task's would be
            conn.loop.call_exception_handler(
                {"message": "open-model request failed while recording", "exception": exc}
            )
        self._ended()

    def _ended(self) -> None:
        """A request of this path is over: the slot goes on (or is freed); wake ``drain``."""
        self.drv._continue()
        quiet = self.quiet
        if quiet is not None and not self.live and not quiet.done():
            quiet.set_result(None)

    # --- the coroutine's side ------------------------------------------------------------------

    async def _redirect(self, req: _Req, status: int, head: bytes) -> None:
        """A 3xx on this path: the rest of ``HttpDriver._send_fast`` for it."""
        drv = self.drv
        ti, phase, ep, user, token, body, t0, client = req
        nout = len(body) if body is not None else 0
        try:
            try:
                status, raw, err = await drv._follow_redirect(ep, status, head, token, body)
            except asyncio.CancelledError:
                drv.counters.in_flight -= 1
                drv._record(ti, t0, drv.clock.now(), 0, "cancelled", 0, nout, ep, user, None, phase)
                raise
            drv.counters.in_flight -= 1
            if err is not None:
                status, raw = 0, b""
                if drv._detail is None:  # else the redirect's own failure (_follow_redirect)
                    drv._detail = client.last_error
            retry = drv._outcome(ep, user, ti, t0, drv.clock.now(), status, err, raw, nout, phase)
            if status == 429 or status == 503:
                drv._retry_pause(header_value(client.last_head, b"retry-after"))
        except BaseException:
            drv._open_active -= 1
            raise
        if retry and not drv.state.stopping:
            await self._reauth(ep, user, token, phase)
        else:
            self._ended()

    async def _reauth(self, ep: Endpoint, user: User, token: str | None, phase: str) -> None:
        """A 401, recorded: re-authenticate and retry once (as ``send`` does)."""
        drv = self.drv
        try:
            drv.counters.reauths += 1
            await drv.auth.reauth(user, token)
            await drv._send(ep, user, drv.clock.now(), False, phase)
        except BaseException:
            drv._open_active -= 1
            raise
        self._ended()

    def abandon(self) -> None:
        """Every request in flight becomes a "cancelled" row (the drain's time is up)."""
        drv = self.drv
        live, self.live = self.live, {}
        now = drv.clock.now()
        for conn, (ti, phase, ep, user, _token, body, t0, client) in live.items():
            conn.notify = None
            conn._finish("cancelled")
            client.settle(conn)
            drv.counters.in_flight -= 1
            drv._open_active -= 1
            nout = len(body) if body is not None else 0
            drv._record(ti, t0, now, 0, "cancelled", 0, nout, ep, user, None, phase)

    def quiet_future(self) -> asyncio.Future[None]:
        """A future set when no request of this path is in flight any more."""
        fut = asyncio.get_running_loop().create_future()
        if not self.live:
            fut.set_result(None)
        self.quiet = fut
        return fut
