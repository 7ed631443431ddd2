"""Test users: the ``UserPool`` factory, per-user token state and assignment strategies.

Token state lives on ``User`` objects; the network side (signup, login, refresh, logout) is
``engine.auth.AuthClient``. Secrets are kept out of every ``repr`` and out of ``to_dict``.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from taskforge_perf.errors import ConfigError


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without verifying it; None if absent."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        exp = json.loads(base64.urlsafe_b64decode(payload)).get("exp")
    except (IndexError, ValueError, AttributeError):
        return None
    return float(exp) if isinstance(exp, int | float) else None


class User:
    """One test user and its current tokens. ``repr`` never shows the password or tokens."""

    __slots__ = (
        "email",
        "_password",
        "index",
        "access",
        "refresh",
        "refresh_at",
        "expires_at",
        "renewing",
        "auth_failures",
        "retry_at",
        "group",
        "session",
        "via",
    )

    def __init__(self, email: str, password: str, index: int = 0) -> None:
        self.email = email
        self._password = password
        self.index = index
        self.access: str | None = None
        self.refresh: str | None = None
        self.refresh_at = 0.0  # monotonic seconds: renew proactively from here on
        self.expires_at = 0.0  # monotonic seconds: the access token is dead from here on
        self.renewing: Any = None  # the single renewal in flight (an asyncio.Task), if any
        self.auth_failures = 0  # consecutive failed renewals (engine.backoff)
        self.retry_at = 0.0  # monotonic seconds: no renewal is tried before this
        self.group: str | None = None  # the UserGroup's name (a column of its rows)
        self.session: int | None = None  # the session's number while in a Sessions journey
        self.via: Any = None  # the group's region client (a FastClient), None = direct

    @property
    def password(self) -> str:
        """The password, for the auth client only."""
        return self._password

    def set_tokens(self, access: str, refresh: str | None, fallback_ttl: float) -> None:
        """Store fresh tokens; schedule the proactive refresh from the JWT ``exp``."""
        now_wall = time.time()
        now = time.monotonic()
        exp = jwt_expiry(access)
        remaining = (exp - now_wall) if exp is not None else fallback_ttl
        if remaining <= 0:
            remaining = fallback_ttl
        self.access = access
        if refresh is not None:
            self.refresh = refresh
        self.expires_at = now + remaining
        # Renew at 3/4 of the lifetime for short tokens, one minute before expiry for long ones.
        self.refresh_at = now + (remaining * 0.75 if remaining < 240 else remaining - 60)

    def clear_tokens(self) -> None:
        """Forget the tokens (after logout or a failed renewal)."""
        self.access = None
        self.refresh = None
        self.refresh_at = self.expires_at = 0.0

    def fresh_token(self) -> str | None:
        """The access token if it needs no renewal now, else None (hot path: no await)."""
        if self.access is not None and time.monotonic() < self.refresh_at:
            return self.access
        return None

    def __repr__(self) -> str:
        return f"User(email={self.email!r}, logged_in={self.access is not None})"


@dataclass(frozen=True, kw_only=True)
class UserSpec:
    """An explicit user for ``UserPool(users=[...])``; the password is hidden from ``repr``."""

    email: str
    password: str

    def __post_init__(self) -> None:
        if not isinstance(self.email, str) or "@" not in self.email:
            raise ConfigError(f"UserSpec.email must be an e-mail address with '@' (got {self.email!r})")
        if not isinstance(self.password, str) or not self.password:
            raise ConfigError(f"UserSpec.password of {self.email!r} must be a non-empty string")

    def __repr__(self) -> str:
        return f"UserSpec(email={self.email!r}, password='***')"


#: ``UserPool(cleanup=...)``: what a run does with its users at the end.
CLEANUPS: tuple[str | None, ...] = ("logout", "remove-test-users", None)


class UserPool:
    """A factory of test users: ``count`` users ``{prefix}{i}@{domain}`` or an explicit list.

    ``cleanup`` is what the run does with its users at the end: ``"logout"`` (default) logs each
    one out (TaskForge answers 401 there: counted, never raised); ``"remove-test-users"`` calls the
    real ``POST /auth/remove-test-users`` once, which deletes EVERY user whose email starts with
    "load" on the target, other people's included: use it only on a target of your own; ``None``
    leaves the users as they are.

    >>> pool = UserPool(count=3, email_prefix="loadtest", domain="example.com")
    >>> [u.email for u in pool]
    ['loadtest1@example.com', 'loadtest2@example.com', 'loadtest3@example.com']

    ``min_ready``: how many users must have signed up or logged in after set-up (an int, or a
    fraction of the pool such as 0.8, rounded up; default 1); below it the run fails fast with a
    ``TargetError``. Above it a partial set-up goes on, reported as ``meta["users"]["ready"]``
    and a warning.
    """

    def __init__(
        self,
        count: int = 20,
        *,
        email_prefix: str = "loadtest",
        domain: str = "example.com",
        password: str = "testpassword123",
        users: Sequence[UserSpec | tuple[str, str]] | None = None,
        signup: bool = True,
        signup_concurrency: int = 10,
        token_ttl: float = 900.0,
        min_ready: int | float | None = None,
        cleanup: str | None = "logout",
    ) -> None:
        if users is None:
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"UserPool.count must be an integer >= 1 (got {count!r})")
            if not isinstance(email_prefix, str) or not email_prefix.strip() or "@" in email_prefix:
                raise ConfigError(
                    f"UserPool.email_prefix must be non-empty without '@' (got {email_prefix!r})"
                )
            if not isinstance(domain, str) or not domain or "@" in domain or "." not in domain:
                raise ConfigError(f"UserPool.domain must be a domain such as 'example.com' (got {domain!r})")
            if not isinstance(password, str) or not password:
                raise ConfigError("UserPool.password must be a non-empty string")
            specs = [(f"{email_prefix}{i}@{domain}", password) for i in range(1, count + 1)]
        else:
            specs = []
            if isinstance(users, str | bytes) or not isinstance(users, Sequence):
                raise ConfigError(
                    "UserPool.users must be a list of UserSpec(email=..., password=...) or "
                    f"(email, password) pairs (got {type(users).__name__})"
                )
            for u in users:
                pair = (u.email, u.password) if isinstance(u, UserSpec) else u
                if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
                    raise ConfigError(
                        "UserPool.users: each user must be a UserSpec or an (email, password) pair "
                        f"(got a {type(u).__name__})"
                    )
                email, pw = pair
                if not isinstance(email, str) or "@" not in email:
                    raise ConfigError(f"UserPool.users: each user needs an email with '@' (got {email!r})")
                if not isinstance(pw, str) or not pw:
                    raise ConfigError(f"UserPool.users: the password of {email!r} must be a non-empty string")
                specs.append((email, pw))
            if not specs:
                raise ConfigError("UserPool.users is empty; give at least one user or use count=")
        if (
            isinstance(signup_concurrency, bool)
            or not isinstance(signup_concurrency, int)
            or signup_concurrency < 1
        ):
            raise ConfigError(
                f"UserPool.signup_concurrency must be an integer >= 1 (got {signup_concurrency!r})"
            )
        ttl = token_ttl
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
            raise ConfigError(f"UserPool.token_ttl must be a finite number of seconds > 0 (got {ttl!r})")
        if not isinstance(signup, bool):
            raise ConfigError(f"UserPool.signup must be True or False (got {signup!r})")
        emails = [e for e, _ in specs]
        if len(set(emails)) != len(emails):
            raise ConfigError("UserPool.users: emails must be unique")
        self.users: tuple[User, ...] = tuple(User(e, p, i) for i, (e, p) in enumerate(specs))
        #: Users that must be signed up / logged in after set-up, else the run fails fast.
        self.min_ready = _min_ready(min_ready, len(self.users))
        self._min_ready_arg = min_ready
        self.signup = signup
        self.signup_concurrency = signup_concurrency
        self.token_ttl = float(token_ttl)
        self.email_prefix = email_prefix if users is None else None
        self.domain = domain if users is None else None
        # --- clean-up at the end of a run (issue 17) ---
        if cleanup not in CLEANUPS:
            raise ConfigError(
                f"UserPool.cleanup must be one of {CLEANUPS} (got {cleanup!r}); 'remove-test-users' "
                "deletes every user whose email starts with 'load' on the target"
            )
        self.cleanup = cleanup

    def __len__(self) -> int:
        return len(self.users)

    def __iter__(self) -> Iterator[User]:
        return iter(self.users)

    def __getitem__(self, i: int) -> User:
        return self.users[i]

    def __repr__(self) -> str:
        return f"UserPool(count={len(self.users)}, first={self.users[0].email!r})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description for run metadata: never the password or tokens."""
        return {
            "count": len(self.users),
            "email_prefix": self.email_prefix,
            "domain": self.domain,
            "signup": self.signup,
            "min_ready": self._min_ready_arg,
            "cleanup": self.cleanup,
        }


def _min_ready(value: int | float | None, count: int) -> int:
    """``UserPool.min_ready`` as a number of users: None -> 1, an int as is, a fraction of the pool
    (0 < f <= 1) rounded up; anything else is a ConfigError naming the field."""
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"UserPool.min_ready must be a number of users (int) or a fraction of the pool "
            f"(0 < f <= 1), e.g. min_ready=15 or min_ready=0.8 (got {value!r})"
        )
    if isinstance(value, int):
        if not 1 <= value <= count:
            raise ConfigError(
                f"UserPool.min_ready must be between 1 and the pool's {count} users (got {value}); "
                "or give a fraction such as 0.8"
            )
        return value
    if not 0 < value <= 1:
        raise ConfigError(
            f"UserPool.min_ready as a float is a fraction of the pool: 0 < f <= 1 (got {value!r}); "
            "give an int for a number of users"
        )
    return max(1, math.ceil(value * count - 1e-9))


# --- assignment strategies: given the logged-in users, return a picker -----------------------

Strategy = Callable[[Sequence[User], random.Random], Callable[[], User]]


def random_assignment(users: Sequence[User], rng: random.Random) -> Callable[[], User]:
    """Each call picks a user uniformly at random (the seed's HTTP strategy)."""
    pool = tuple(users)
    n = len(pool)
    rnd = rng.random
    return lambda: pool[int(rnd() * n)]


def round_robin_assignment(users: Sequence[User], rng: random.Random) -> Callable[[], User]:
    """Calls cycle through the users in order (the seed's WebSocket strategy)."""
    it = itertools.cycle(tuple(users))
    return lambda: next(it)
