"""Users, sessions and tokens of the reference target (in memory, one store per process).

Two token models. By default access tokens carry ``sub, sid, jti`` and every login opens a
session. With ``real_quirks`` they carry the real ``{id, email, iat, exp}`` (integer times: two
tokens of one user issued in the same second are identical, as in the real system) and each user
holds one stored refresh token and one current access token, like the real database and Redis:
a login replaces both, a refresh rotates both, reuse detection, a wrong password and a removal
clear both. In every mode, refreshing after the stored refresh token was cleared is 403
"Access denied" (the real controller's answer).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field

import jwt

from taskforge_perf.target.config import TargetConfig

_CACHE_MAX = 50_000


@dataclass(slots=True)
class User:
    id: str
    email: str
    salt: bytes
    digest: bytes
    sessions: set[str] = field(default_factory=set)
    refresh: str | None = None  # real_quirks: the stored refresh token
    access: str | None = None  # real_quirks: the current access token (the gateway's session)


class AuthError(Exception):
    """An auth failure with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AuthStore:
    """Signup/login/refresh/logout with HS256 access tokens and rotating refresh tokens."""

    def __init__(self, config: TargetConfig) -> None:
        self._cfg = config
        self._secret = secrets.token_bytes(32)  # per process, never logged
        self._users: dict[str, User] = {}
        self._by_id: dict[str, User] = {}
        self._sessions: dict[str, str] = {}  # sid -> user id, only live sessions
        self._used_refresh: set[str] = set()
        self._cache: dict[str, tuple[str, str, float]] = {}
        self._quirks = config.real_quirks
        self._refresh_secret = secrets.token_bytes(32)

    # --- passwords ------------------------------------------------------------------------------

    async def _hash(self, password: str, salt: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, hashlib.pbkdf2_hmac, "sha256", password.encode(), salt, self._cfg.hash_iterations
        )

    # --- sessions and tokens --------------------------------------------------------------------

    def _issue_real(self, user: User) -> tuple[str, str]:
        now = int(time.time())
        claims = {"id": user.id, "email": user.email, "iat": now}
        access = jwt.encode(
            {**claims, "exp": now + int(self._cfg.access_ttl)}, self._secret, algorithm="HS256"
        )
        refresh = jwt.encode(
            {**claims, "jti": secrets.token_hex(12), "exp": now + int(self._cfg.refresh_ttl)},
            self._refresh_secret,
            algorithm="HS256",
        )
        user.access, user.refresh = access, refresh
        return access, refresh

    def _issue(self, user: User, sid: str | None = None) -> tuple[str, str]:
        if self._quirks:
            return self._issue_real(user)
        if sid is None:
            sid = uuid.uuid4().hex
            self._sessions[sid] = user.id
            user.sessions.add(sid)
        now = time.time()
        access = jwt.encode(
            {
                "sub": user.id,
                "sid": sid,
                "jti": secrets.token_hex(6),
                "iat": int(now),
                "exp": round(now + self._cfg.access_ttl, 3),
            },
            self._secret,
            algorithm="HS256",
        )
        refresh = jwt.encode(
            {
                "sub": user.id,
                "sid": sid,
                "jti": secrets.token_hex(12),
                "typ": "refresh",
                "iat": int(now),
                "exp": round(now + self._cfg.refresh_ttl, 3),
            },
            self._secret,
            algorithm="HS256",
        )
        return access, refresh

    def revoke_all(self, user: User) -> None:
        for sid in user.sessions:
            self._sessions.pop(sid, None)
        user.sessions.clear()
        user.access = user.refresh = None

    def session_live(self, sid: str) -> bool:
        """Default model: the session ``sid`` is open. With ``real_quirks`` ``sid`` is the access
        token itself: live while it is its user's current one (not replaced, not revoked)."""
        if not self._quirks:
            return sid in self._sessions
        try:
            user_id, _ = self.verify_access(sid)
        except AuthError:
            return False
        user = self._by_id.get(user_id)
        return user is not None and user.access == sid

    def remove_test_users(self, prefix: str = "load") -> int:
        """Forget every user whose email starts with ``prefix`` (and their sessions), as the real
        system's ``POST /auth/remove-test-users`` does; returns how many were removed."""
        gone = [u for e, u in self._users.items() if e.startswith(prefix)]
        for user in gone:
            self.revoke_all(user)
            del self._users[user.email]
            self._by_id.pop(user.id, None)
        self._cache.clear()
        return len(gone)

    def user_of(self, user_id: str) -> User | None:
        return self._by_id.get(user_id)

    def verify_access(self, token: str) -> tuple[str, str]:
        """Return ``(user id, session id)`` of a valid access token or raise ``AuthError(401)``.

        The session is not checked here: callers decide (the real system forgets on POST /tasks).
        """
        hit = self._cache.get(token)
        quirks = self._quirks
        if hit is None:
            bad = "Invalid or expired token" if quirks else "Invalid token"
            try:
                claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"verify_exp": False})
                if quirks:
                    hit = (str(claims["id"]), token, float(claims["exp"]))
                else:
                    hit = (str(claims["sub"]), str(claims["sid"]), float(claims["exp"]))
            except (jwt.PyJWTError, KeyError, TypeError, ValueError):
                raise AuthError(401, bad) from None
            if "typ" in claims:
                raise AuthError(401, bad)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[token] = hit
        if hit[2] <= time.time():
            raise AuthError(401, "Invalid or expired token" if quirks else "Token expired")
        return hit[0], hit[1]

    # --- the four routes ------------------------------------------------------------------------

    async def signup(self, email: str, password: str) -> tuple[str, str]:
        if email in self._users:
            raise AuthError(409, "User already exists")
        salt = os.urandom(16)
        digest = await self._hash(password, salt)
        if email in self._users:  # a concurrent signup won the race while we hashed
            raise AuthError(409, "User already exists")
        user = User(uuid.uuid4().hex, email, salt, digest)
        self._users[email] = user
        self._by_id[user.id] = user
        return self._issue(user)

    async def login(self, email: str, password: str) -> tuple[str, str]:
        user = self._users.get(email)
        if user is None:
            raise AuthError(404, "User not found")
        digest = await self._hash(password, user.salt)
        if not hmac.compare_digest(digest, user.digest):
            self.revoke_all(user)
            raise AuthError(401, "Invalid credentials")
        self.revoke_all(user)
        return self._issue(user)

    def _refresh_real(self, token: str) -> tuple[str, str]:
        # jsonwebtoken's errors reach the real error handler: 500 with the library's message.
        try:
            claims = jwt.decode(token, self._refresh_secret, algorithms=["HS256"])
        except jwt.InvalidSignatureError:
            raise AuthError(500, "invalid signature") from None
        except jwt.ExpiredSignatureError:
            raise AuthError(500, "jwt expired") from None
        except jwt.PyJWTError:
            raise AuthError(500, "jwt malformed") from None
        user = self._by_id.get(str(claims.get("id")))
        if user is None or user.refresh is None:
            raise AuthError(403, "Access denied")
        if user.refresh != token:
            self.revoke_all(user)
            raise AuthError(403, "Token reuse detected")
        return self._issue_real(user)

    def refresh(self, token: str) -> tuple[str, str]:
        if self._quirks:
            return self._refresh_real(token)
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"verify_exp": False})
        except jwt.DecodeError:
            raise AuthError(401, "jwt malformed") from None
        except jwt.PyJWTError:
            raise AuthError(401, "Invalid refresh token") from None
        if claims.get("typ") != "refresh":
            raise AuthError(401, "Invalid refresh token")
        user = self._by_id.get(str(claims.get("sub")))
        if user is None:
            raise AuthError(401, "Invalid refresh token")
        if float(claims["exp"]) <= time.time():
            raise AuthError(401, "Refresh token expired")
        jti = str(claims["jti"])
        if jti in self._used_refresh:
            self.revoke_all(user)
            raise AuthError(403, "Token reuse detected")
        sid = str(claims["sid"])
        if sid not in self._sessions:  # the stored refresh token was cleared (reuse, logout, ...)
            raise AuthError(403, "Access denied")
        self._used_refresh.add(jti)
        return self._issue(user, sid)

    def logout(self, token: str) -> None:
        user_id, sid = self.verify_access(token)
        if self._quirks:
            user = self._by_id.get(user_id)
            if user is not None and user.access == token:
                self.revoke_all(user)
            return
        self._sessions.pop(sid, None)
        user = self._by_id.get(user_id)
        if user is not None:
            user.sessions.discard(sid)
