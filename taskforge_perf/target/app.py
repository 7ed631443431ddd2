"""The HTTP API of the reference target (aiohttp), DESIGN.md section 4 line by line.

``real_quirks`` switches to the real gateway's messages and error bodies (Express: an HTML 404 for
unknown routes); ``real_timing`` adds its latencies and capacity (see ``TargetConfig``).

Each route is wrapped once, at build time, by ``_instrument``: it counts the request, observes its
latency and applies only the fault knobs configured for that route (connection drop, capacity
slot, added latency, injected 500, stall windows), so an unconfigured target does almost no work
per request beyond the handler itself.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from aiohttp import web

from taskforge_perf.target.auth import AuthError, AuthStore
from taskforge_perf.target.config import TASK_TYPES, TargetConfig
from taskforge_perf.target.metrics import Metrics
from taskforge_perf.target.specs import Delay
from taskforge_perf.target.workers import Workers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_JSON = "application/json"
_TASK_TYPES = frozenset(TASK_TYPES)
_FORM = "application/x-www-form-urlencoded"
#: ``real_timing``: the serial service time of one request (the gateway's one event loop), its
#: growth per open WebSocket, and the latencies on top (signup/login: bcrypt).
REAL_SERVICE = 0.002
REAL_SERVICE_PER_SOCKET = 0.012
REAL_LATENCY = {
    "POST /auth/signup": Delay("uniform", 0.120, 0.145),
    "POST /auth/login": Delay("uniform", 0.120, 0.145),
    "GET /metrics": Delay("exp", 0.003),
}
REAL_LATENCY_OTHER = Delay("exp", 0.015)
_EXPRESS_404 = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
    "</head>\n<body>\n<pre>Cannot %s %s</pre>\n</body>\n</html>\n"
)


def _json(status: int, obj: object) -> web.Response:
    return web.Response(body=json.dumps(obj).encode(), status=status, content_type=_JSON)


class HttpApi:
    """Builds the aiohttp application over one target's auth store, workers and metrics."""

    def __init__(self, config: TargetConfig, auth: AuthStore, workers: Workers, metrics: Metrics) -> None:
        self._cfg = config
        self._auth = auth
        self._workers = workers
        self._metrics = metrics
        self._rng = random.Random(config.seed)
        self._stalls: list[tuple[float, float]] = []  # absolute monotonic windows, set at start
        self._sem = asyncio.Semaphore(config.max_concurrency) if config.max_concurrency else None
        self._quirks = config.real_quirks
        self._busy_until = 0.0  # real_timing: when the serial service slot is free again
        msg = b"Task created and queued for dispatch." if self._quirks else b"Task queued for processing"
        self._created = b'{"success":true,"taskId":"%s","message":"' + msg + b'"}'

    def mark_started(self, now: float | None = None) -> None:
        """Anchor the stall windows: call once when the target is ready."""
        t0 = time.monotonic() if now is None else now
        self._stalls[:] = [(t0 + a, t0 + a + d) for a, d in self._cfg.stalls]

    def build(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        r = app.router
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/auth/signup", self.signup),
            ("POST", "/auth/login", self.login),
            ("POST", "/auth/refresh", self.refresh),
            ("POST", "/auth/logout", self.logout),
            ("POST", "/auth/remove-test-users", self.remove_test_users),
            ("POST", "/tasks", self.create_task),
            ("GET", "/health", self.health),
            ("GET", "/health/live", self.live),
            ("GET", "/health/ready", self.ready),
            ("GET", "/metrics", self.metrics),
        ]
        for method, path, handler in routes:
            r.add_route(method, path, self._instrument(f"{method} {path}", handler))
        r.add_route("*", "/{tail:.*}", self._instrument("other", self.not_found))
        return app

    # --- instrumentation and faults -------------------------------------------------------------

    def _instrument(self, route: str, handler: Handler) -> Handler:
        cfg, observe, rng = self._cfg, self._metrics.observe, self._rng
        perf, monotonic, sleep = time.perf_counter, time.monotonic, asyncio.sleep
        drop = cfg.drop_rate if route != "GET /metrics" else 0.0
        delay = cfg.latency_for(route)
        if cfg.real_timing and delay is None:
            delay = REAL_LATENCY.get(route, REAL_LATENCY_OTHER)
        serial = self._serial if cfg.real_timing else None
        err = cfg.error_rate_for(route)
        sem = self._sem if route != "GET /metrics" else None
        service = cfg.service_time
        stalls = self._stalls
        err_body = json.dumps(self._error_obj(500, "Injected error")).encode()

        async def instrumented(request: web.Request) -> web.StreamResponse:
            t0 = perf()
            if drop and rng.random() < drop:
                tr = request.transport
                if tr is not None:
                    tr.abort()
                observe(route, "aborted", perf() - t0)
                return web.Response(status=500)
            if sem is not None:
                async with sem:
                    await sleep(service)
            if serial is not None:
                await serial()
            if delay is not None:
                await sleep(delay.sample(rng))
            if err and rng.random() < err:
                resp: web.StreamResponse = web.Response(body=err_body, status=500, content_type=_JSON)
            else:
                try:
                    resp = await handler(request)
                except Exception as e:  # never let the target crash on a request
                    resp = self._error(500, f"Internal error: {type(e).__name__}")
            if stalls:
                now = monotonic()
                for a, b in stalls:
                    while a <= now < b:
                        await sleep(b - now)
                        now = monotonic()
            observe(route, resp.status, perf() - t0)
            return resp

        return instrumented

    async def _serial(self) -> None:
        """One serial service slot (a virtual clock: exact capacity whatever the timer granularity);
        each open WebSocket makes it 1.2% slower, as the real gateway shares its 2 cores."""
        now = time.monotonic()
        service = REAL_SERVICE * (1.0 + REAL_SERVICE_PER_SOCKET * self._metrics.ws_open)
        self._busy_until = done = max(now, self._busy_until) + service
        await asyncio.sleep(done - now)

    # --- response helpers -----------------------------------------------------------------------

    def _error_obj(self, status: int, message: str) -> dict[str, object]:
        err: dict[str, object] = {"message": message, "status": status}
        if self._quirks:
            err["stack"] = f"Error: {message}\n    at /app/src/server.js:42:13"
        return {"success": False, "error": err}

    def _error(self, status: int, message: str) -> web.Response:
        return _json(status, self._error_obj(status, message))

    @staticmethod
    def _unauthorized(message: str) -> web.Response:
        return _json(401, {"message": message})

    async def _body(self, request: web.Request) -> dict[str, object] | web.Response:
        raw = await request.read()
        if request.content_type == _FORM:  # express.urlencoded(): form bodies are parsed too
            return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            data = json.loads(raw)
        except ValueError:
            return self._error(400, "Invalid JSON body")
        if not isinstance(data, dict):
            return self._error(400, "The JSON body must be an object")
        return data

    def _bearer(self, request: web.Request) -> tuple[str, str] | web.Response:
        header = request.headers.get("Authorization")
        if not header or not header.startswith("Bearer "):
            return self._unauthorized("Unauthorized" if self._quirks else "No token provided")
        try:
            return self._auth.verify_access(header[7:])
        except AuthError as e:
            return self._unauthorized(e.message)

    @staticmethod
    def _tokens(status: int, access: str, refresh: str) -> web.Response:
        return _json(status, {"success": True, "accessToken": access, "refreshToken": refresh})

    # --- routes ---------------------------------------------------------------------------------

    async def _credentials(self, request: web.Request) -> tuple[str, str] | web.Response:
        data = await self._body(request)
        if isinstance(data, web.Response):
            return data
        email, password = data.get("email"), data.get("password")
        if not isinstance(email, str) or not email or not isinstance(password, str) or not password:
            return self._error(
                400, "Email and password required" if self._quirks else "Email and password are required"
            )
        return email, password

    async def signup(self, request: web.Request) -> web.Response:
        cred = await self._credentials(request)
        if isinstance(cred, web.Response):
            return cred
        try:
            return self._tokens(201, *await self._auth.signup(*cred))
        except AuthError as e:
            return self._error(e.status, e.message)

    async def login(self, request: web.Request) -> web.Response:
        cred = await self._credentials(request)
        if isinstance(cred, web.Response):
            return cred
        try:
            return self._tokens(200, *await self._auth.login(*cred))
        except AuthError as e:
            return self._error(e.status, e.message)

    async def refresh(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        if isinstance(data, web.Response):
            return data
        token = data.get("refreshToken")
        if not isinstance(token, str) or not token:
            return self._error(400, "Refresh token required" if self._quirks else "refreshToken is required")
        try:
            return self._tokens(200, *self._auth.refresh(token))
        except AuthError as e:
            return self._error(e.status, e.message)

    async def logout(self, request: web.Request) -> web.Response:
        if self._quirks:  # the real route lacks its auth middleware: req.user is never set
            return self._error(401, "Unauthorized")
        who = self._bearer(request)
        if isinstance(who, web.Response):
            return who
        self._auth.logout(request.headers["Authorization"][7:])
        return _json(200, {"success": True, "message": "Logged out"})

    async def create_task(self, request: web.Request) -> web.Response:
        who = self._bearer(request)
        if isinstance(who, web.Response):
            return who
        user_id, sid = who
        # The real system calls its async session check without awaiting it: never refuses.
        if not self._quirks and not self._auth.session_live(sid):
            return self._unauthorized("Session revoked")
        data = await self._body(request)
        if isinstance(data, web.Response):
            return data
        task_type, payload = data.get("type"), data.get("payload")
        if not task_type or payload is None:  # the real contract, every mode
            return self._error(400, "type and payload are required")
        if not isinstance(task_type, str) or task_type not in _TASK_TYPES:
            return self._error(400, f"Unsupported task type: {task_type}")
        if not isinstance(payload, dict):
            return self._error(400, "payload must be an object")
        task_id = str(uuid.uuid4())
        created = self._metrics.tasks_created
        created[task_type] = created.get(task_type, 0) + 1
        self._workers.submit(task_id, task_type, user_id, payload)
        return web.Response(body=self._created % task_id.encode(), status=202, content_type=_JSON)

    async def health(self, request: web.Request) -> web.Response:
        ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        t0 = time.perf_counter()
        await asyncio.sleep(0)  # the real one pings PostgreSQL and Redis: report the round trips
        lat = round((time.perf_counter() - t0) * 1e3)
        return web.Response(
            body=b'{"status":"ok","timestamp":"%s","services":{"database":{"status":"up","latency":%d},'
            b'"redis":{"status":"up","latency":%d}},"uptime":%.3f}'
            % (ts.encode(), lat, lat, self._metrics.uptime()),
            content_type=_JSON,
        )

    async def live(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "alive"})

    async def ready(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ready"})

    async def remove_test_users(self, request: web.Request) -> web.Response:
        """The real clean-up endpoint: no auth, deletes every user whose email starts with "load"."""
        n = self._auth.remove_test_users("load")
        return _json(200, {"success": True, "message": f"Removed {n} test users", "deleted": n})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self._metrics.render(), content_type="text/plain")

    async def not_found(self, request: web.Request) -> web.Response:
        if self._quirks:  # Express's default final handler
            return web.Response(
                text=_EXPRESS_404 % (request.method, request.path), status=404, content_type="text/html"
            )
        return self._error(404, f"Cannot {request.method} {request.path}")
