"""Sessions: users that arrive during a run, follow a journey written in plain Python, and leave.

A journey is an async function given a ``Session`` (``taskforge_perf.engine.sessions``)::

    async def shopper(s):
        await s.login()                       # signs up first if the user does not exist yet
        task = await s.create_task("generate-pdf")
        await s.think(0.5)
        await s.watch(task, timeout=30)       # over a WebSocket, until completed or failed
        await s.logout()

    run = await tester.run(duration=60, rate=0, sessions=tfp.Sessions(shopper, rate=2))

Users arrive at ``rate`` sessions per second (a number, or a mapping of phase name to rate), as a
Poisson process (``poisson=True``, the default: exponential gaps) or evenly spaced. Each session
gets a fresh user ``{email_prefix}{n}@{domain}`` and the number ``n``: every row of its steps
(log in, requests, task creation, log out over HTTP; connect, subscribe and messages of its
watches over the WebSocket) carries ``session = n`` and ``group = name``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from taskforge_perf.errors import ConfigError
from taskforge_perf.groups import ThinkTime, as_think_time
from taskforge_perf.mix import RequestMix

Journey = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class Sessions:
    """Arrivals of users who follow ``journey`` (see the module docstring).

    >>> async def visit(s):
    ...     await s.login(); await s.request("GET /health"); await s.logout()
    >>> Sessions(visit, rate=2.0)
    Sessions(visit, rate=2.0, poisson=True, name='sessions')
    """

    journey: Journey
    _: KW_ONLY
    rate: float | Mapping[str, float] = 1.0
    poisson: bool = True
    name: str = "sessions"
    think_time: ThinkTime | float | Callable[[Any], float] | None = None
    mix: RequestMix | None = None
    email_prefix: str = "loadsession"
    domain: str = "example.com"
    password: str = "testpassword123"
    max_active: int = 1000
    seed: int | None = None

    def __post_init__(self) -> None:
        if not callable(self.journey):
            raise ConfigError(
                "Sessions.journey must be an async function taking a Session (async def j(s): ...)"
            )
        rates = self.rate if isinstance(self.rate, Mapping) else {"*": self.rate}
        for phase, r in rates.items():
            if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r < math.inf:
                raise ConfigError(
                    f"Sessions.rate must be sessions per second >= 0, or a mapping of phase name to "
                    f"rate (got {r!r} for {phase!r})"
                )
        if not isinstance(self.poisson, bool):
            raise ConfigError(f"Sessions.poisson must be True or False (got {self.poisson!r})")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"Sessions.name must be a non-empty name (got {self.name!r})")
        object.__setattr__(self, "think_time", as_think_time(self.think_time, "Sessions"))
        if self.mix is not None and not isinstance(self.mix, RequestMix):
            raise ConfigError(f"Sessions.mix must be a RequestMix or None (got {type(self.mix).__name__})")
        if not isinstance(self.email_prefix, str) or not self.email_prefix or "@" in self.email_prefix:
            raise ConfigError(
                f"Sessions.email_prefix must be non-empty without '@' (got {self.email_prefix!r})"
            )
        if not isinstance(self.domain, str) or "." not in self.domain or "@" in self.domain:
            raise ConfigError(f"Sessions.domain must be a domain such as 'example.com' (got {self.domain!r})")
        if not isinstance(self.password, str) or not self.password:
            raise ConfigError("Sessions.password must be a non-empty string")
        m = self.max_active
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ConfigError(f"Sessions.max_active must be an integer >= 1 (got {m!r})")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"Sessions.seed must be an integer or None (got {self.seed!r})")

    def rate_for(self, phase: str) -> float:
        """Sessions per second wanted in ``phase`` (a phase missing from a mapping: 0)."""
        if isinstance(self.rate, Mapping):
            return float(self.rate.get(phase, 0.0))
        return float(self.rate)

    def __repr__(self) -> str:
        name = getattr(self.journey, "__name__", "journey")
        return f"Sessions({name}, rate={self.rate!r}, poisson={self.poisson}, name={self.name!r})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description for run metadata (never the password)."""
        tt = self.think_time
        return {
            "journey": getattr(self.journey, "__name__", "journey"),
            "rate": dict(self.rate) if isinstance(self.rate, Mapping) else self.rate,
            "poisson": self.poisson,
            "name": self.name,
            "think_time": tt.to_dict() if isinstance(tt, ThinkTime) else None,
            "max_active": self.max_active,
        }
