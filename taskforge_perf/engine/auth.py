"""Signup, login, refresh and logout against the target, recorded as rows.

Renewal is single-flight per user: concurrent callers await the one refresh in flight, because
TaskForge revokes every session of a user when a refresh token is presented twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

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
    """No valid token could be obtained for a user."""


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

    async def signup(self, user: User) -> bool:
        """Create the user (201 gives tokens); 409 means it exists and a login follows."""
        status, body = await self._post(
            SIGNUP, "/auth/signup", user, {"email": user.email, "password": user.password}
        )
        if status == 201 and self._store(user, body):
            return True
        if status == 409:
            self.signup_existing += 1
        return await self.login(user)

    async def login(self, user: User) -> bool:
        """Log in; True when tokens were stored."""
        status, body = await self._post(
            LOGIN, "/auth/login", user, {"email": user.email, "password": user.password}
        )
        self.counters.logins += 1
        if 200 <= status < 300 and self._store(user, body):
            return True
        user.clear_tokens()
        return False

    async def _renew(self, user: User) -> bool:
        try:
            if user.refresh is not None:
                status, body = await self._post(
                    REFRESH, "/auth/refresh", user, {"refreshToken": user.refresh}
                )
                if 200 <= status < 300 and self._store(user, body):
                    self.counters.refreshes += 1
                    return True
            ok = await self.login(user)
            if not ok:
                self.counters.auth_failures += 1
            return ok
        finally:
            user.renewing = None

    async def token(self, user: User) -> str:
        """A valid access token, renewing (single-flight) when it is due; raises AuthFailed."""
        tok = user.fresh_token()
        if tok is not None:
            return tok
        await self._renew_once(user)
        if user.access is None:
            raise AuthFailed(user.email)
        return user.access

    async def reauth(self, user: User, rejected: str | None) -> None:
        """After a 401 with token ``rejected``: renew once, unless someone already did."""
        if user.access is not None and user.access != rejected:
            return
        user.refresh_at = 0.0
        await self._renew_once(user)

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
                    await self.login(user)
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
