"""Signup, login, refresh and logout against the target, recorded as rows.

Renewal is single-flight per user: concurrent callers await the one refresh in flight, because
TaskForge revokes every session of a user when a refresh token is presented twice.

Under failure, renewal backs off per user and pool-wide (``engine.backoff``: the numbers are
there); a login answered 404 after set-up (the target restarted and forgot its users) signs the
user up again when the pool signs users up.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from taskforge_perf.engine.backoff import CircuitBreaker, backoff_delay
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.failures import classify, status_error
from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters
from taskforge_perf.users import User, UserPool

SIGNUP, LOGIN, REFRESH, LOGOUT = (
    "POST /auth/signup",
    "POST /auth/login",
    "POST /auth/refresh",
    "POST /auth/logout",
)
REMOVE = "POST /auth/remove-test-users"
_JSON = {"Content-Type": "application/json"}


class AuthFailed(Exception):
    """No valid token could be obtained for a user; ``retry_in``: seconds until the next try."""

    def __init__(self, email: str, retry_in: float = 0.0) -> None:
        super().__init__(email)
        self.retry_in = retry_in


class AuthClient:
    """Talks to the auth endpoints for a pool; every call is a recorded row."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        pool: UserPool,
        recorder: HttpRecorder,
        counters: LiveCounters,
        clock: Clock,
        phase: Callable[[], str],
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.pool = pool
        self.recorder = recorder
        self.counters = counters
        self.clock = clock
        self.phase = phase
        self.logout_failures = 0
        self.cleanup_failures = 0  # remove-test-users not answered 2xx
        self.signup_existing = 0
        #: Pool-wide breaker over renewal outcomes (see engine.backoff).
        self.breaker = CircuitBreaker(len(pool))
        self._jitter = random.Random()
        self.renewal_failures = 0
        self.backoff_skips = 0  # renewals not tried because the user was backing off
        self.max_backoff_s = 0.0
        self.resignups = 0  # users signed up again after a login answered 404

    async def _post(
        self,
        name: str,
        path: str,
        user: User,
        body: dict[str, Any] | None,
        token: str | None = None,
    ) -> tuple[int, dict[str, Any] | None]:
        """POST and record one auth request; (0, None) on a transport failure."""
        data = json.dumps(body).encode() if body is not None else None
        headers = dict(_JSON) if data is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        t0 = self.clock.now()
        status, nin, err, parsed = 0, 0, None, None
        try:
            async with self.session.post(self.base_url + path, data=data, headers=headers) as resp:
                raw = await resp.read()
                status, nin = resp.status, len(raw)
            err = status_error(status)
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                if status < 400:
                    err = "bad_body"
        except asyncio.CancelledError:
            self.recorder.record(
                t0,
                t0,
                self.clock.now(),
                0,
                "cancelled",
                0,
                len(data or b""),
                name,
                "POST",
                user.email,
                self.phase(),
                None,
                user.group,
                user.session,
            )
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row
            err = classify(exc)
        self.recorder.record(
            t0,
            t0,
            self.clock.now(),
            status,
            err,
            nin,
            len(data or b""),
            name,
            "POST",
            user.email,
            self.phase(),
            None,
            user.group,
            user.session,
        )
        self.counters.requests += 1
        if err is not None:
            self.counters.error(err)
        return status, parsed if isinstance(parsed, dict) else None

    def _store(self, user: User, body: dict[str, Any] | None) -> bool:
        access = (body or {}).get("accessToken")
        if not isinstance(access, str):
            return False
        refresh = (body or {}).get("refreshToken")
        user.set_tokens(access, refresh if isinstance(refresh, str) else None, self.pool.token_ttl)
        return True

    async def signup(self, user: User, *, then_login: bool = True) -> bool:
        """Create the user (201 gives tokens); 409 means it exists and a login follows."""
        status, body = await self._post(
            SIGNUP, "/auth/signup", user, {"email": user.email, "password": user.password}
        )
        if status == 201 and self._store(user, body):
            return True
        if status == 409:
            self.signup_existing += 1
        if not then_login:
            user.clear_tokens()
            return False
        return await self.login(user, resignup=False)

    async def login(self, user: User, *, resignup: bool = True) -> bool:
        """Log in; True when tokens were stored. A 404 (the target forgot the user) signs the
        user up again when the pool signs users up and ``resignup`` allows it."""
        status, body = await self._post(
            LOGIN, "/auth/login", user, {"email": user.email, "password": user.password}
        )
        self.counters.logins += 1
        if 200 <= status < 300 and self._store(user, body):
            return True
        if status == 404 and resignup and self.pool.signup:
            self.resignups += 1
            return await self.signup(user, then_login=False)
        user.clear_tokens()
        return False

    async def _renew(self, user: User) -> bool:
        """Renew unless backing off (per user, then pool-wide); record the outcome."""
        try:
            now = time.monotonic()
            if now < user.retry_at:
                self.backoff_skips += 1
                return False
            if not self.breaker.allow(now):
                return False
            ok = await self._renew_now(user)
            now = time.monotonic()
            self.breaker.record(ok, now)
            if ok:
                user.auth_failures, user.retry_at = 0, 0.0
            else:
                self.renewal_failures += 1
                user.auth_failures += 1
                delay = backoff_delay(user.auth_failures, self._jitter)
                self.max_backoff_s = max(self.max_backoff_s, delay)
                user.retry_at = now + delay
            return ok
        finally:
            user.renewing = None

    async def _renew_now(self, user: User) -> bool:
        if user.refresh is not None:
            status, body = await self._post(REFRESH, "/auth/refresh", user, {"refreshToken": user.refresh})
            if 200 <= status < 300 and self._store(user, body):
                self.counters.refreshes += 1
                return True
        ok = await self.login(user)
        if not ok:
            self.counters.auth_failures += 1
        return ok

    def retry_in(self, user: User) -> float:
        """Seconds until a renewal of ``user`` may be tried again (back-off or breaker)."""
        now = time.monotonic()
        return max(user.retry_at - now, self.breaker.retry_in(now), 0.0)

    async def token(self, user: User) -> str:
        """A valid access token, renewing (single-flight) when it is due; raises AuthFailed
        (with the seconds until the next try) when none can be had now."""
        tok = user.fresh_token()
        if tok is not None:
            return tok
        await self._renew_once(user)
        if user.access is None or time.monotonic() >= user.expires_at:
            raise AuthFailed(user.email, self.retry_in(user))
        return user.access  # renewal failed or backed off, but the token is still valid

    async def reauth(self, user: User, rejected: str | None) -> None:
        """After a 401 with token ``rejected``: renew once, unless someone already did."""
        if user.access is not None and user.access != rejected:
            return
        user.refresh_at = user.expires_at = 0.0  # the target refused it: it is dead
        await self._renew_once(user)

    def failure_stats(self) -> dict[str, Any]:
        """Back-off and breaker figures for the run's meta."""
        return {
            "renewal_failures": self.renewal_failures,
            "backoff_skips": self.backoff_skips,
            "max_backoff_s": round(self.max_backoff_s, 3),
            "breaker_opened": self.breaker.opened,
            "breaker_refused": self.breaker.refused,
            "resignups": self.resignups,
        }

    async def _renew_once(self, user: User) -> None:
        task = user.renewing
        if task is None:
            task = user.renewing = asyncio.ensure_future(self._renew(user))
        await asyncio.shield(task)

    async def setup(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Sign up (or log in) every user with bounded concurrency; returns how many have tokens."""
        sem = asyncio.Semaphore(self.pool.signup_concurrency)
        done = 0
        total = len(self.pool)

        async def one(user: User) -> None:
            nonlocal done
            async with sem:
                if self.pool.signup:
                    await self.signup(user)
                else:
                    await self.login(user, resignup=False)
            done += 1
            if progress is not None:
                progress(done, total)

        await asyncio.gather(*(one(u) for u in self.pool))
        return sum(1 for u in self.pool if u.access is not None)

    async def cleanup(self) -> None:
        """End of run, as ``pool.cleanup`` says: log out, remove the test users, or nothing."""
        mode = self.pool.cleanup
        if mode == "logout":
            await self.logout_all()
            return
        for user in self.pool:
            if user.renewing is not None:
                user.renewing.cancel()
        if mode == "remove-test-users":
            # The real endpoint (no auth) deletes every user whose email starts with "load".
            status, _ = await self._post(REMOVE, "/auth/remove-test-users", self.pool[0], None)
            if not 200 <= status < 300:
                self.cleanup_failures += 1
        for user in self.pool:
            user.clear_tokens()

    async def logout_all(self) -> None:
        """Log every user out; failures (TaskForge answers 401 here) are counted, never raised."""

        async def one(user: User) -> None:
            task = user.renewing
            if task is not None:
                task.cancel()
            if user.access is None:
                return
            status, _ = await self._post(LOGOUT, "/auth/logout", user, None, token=user.access)
            if not 200 <= status < 300:
                self.logout_failures += 1
            user.clear_tokens()

        await asyncio.gather(*(one(u) for u in self.pool), return_exceptions=True)
