"""User groups: several kinds of users in one run, each with its own mix and think time.

A ``UserGroup`` is configuration only (frozen, validated). The engine turns the groups of a run
into one combined ``UserPool`` (every user knows its group: ``User.group``) and a ``GroupPicker``
that decides which group sends each request: in the open model each arrival draws a group in
proportion to the weights; in the closed model virtual user ``i`` belongs to one group for its
whole life, the users interleaved so that any level keeps the weights' shares.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskforge_perf.errors import ConfigError
from taskforge_perf.mix import RequestMix
from taskforge_perf.users import UserPool

_KINDS = ("constant", "uniform", "exponential", "callable")


@dataclass(frozen=True, kw_only=True)
class ThinkTime:
    """A think-time distribution (seconds between a virtual user's requests).

    >>> ThinkTime.exponential(0.5)
    ThinkTime.exponential(mean=0.5)
    >>> ThinkTime.uniform(0.1, 0.3).sample(random.Random(1)) < 0.3
    True
    """

    kind: str = "constant"
    a: float = 0.0  # constant: the value; uniform: low; exponential: the mean
    b: float = 0.0  # uniform: high
    fn: Callable[[random.Random], float] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"ThinkTime.kind must be one of {', '.join(_KINDS)} (got {self.kind!r})")
        for name in ("a", "b"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < math.inf:
                raise ConfigError(f"ThinkTime.{name} must be a finite number of seconds >= 0 (got {v!r})")
        if self.kind == "uniform" and self.b < self.a:
            raise ConfigError(f"ThinkTime.uniform: high ({self.b}) must be >= low ({self.a})")
        if self.kind == "callable" and not callable(self.fn):
            raise ConfigError("ThinkTime.of(fn): fn must be a callable (random.Random) -> seconds")

    @classmethod
    def constant(cls, seconds: float) -> ThinkTime:
        """Always ``seconds``."""
        return cls(kind="constant", a=seconds)

    @classmethod
    def uniform(cls, low: float, high: float) -> ThinkTime:
        """Uniform between ``low`` and ``high`` seconds."""
        return cls(kind="uniform", a=low, b=high)

    @classmethod
    def exponential(cls, mean: float) -> ThinkTime:
        """Exponential with the given mean (memoryless pauses, as in a Poisson user)."""
        if not isinstance(mean, int | float) or isinstance(mean, bool) or mean <= 0:
            raise ConfigError(f"ThinkTime.exponential(mean) must be > 0 seconds (got {mean!r})")
        return cls(kind="exponential", a=mean)

    @classmethod
    def of(cls, fn: Callable[[random.Random], float]) -> ThinkTime:
        """Any distribution: ``fn(rng)`` returns seconds (negative values count as 0)."""
        return cls(kind="callable", fn=fn)

    def sample(self, rng: random.Random) -> float:
        """One think time in seconds."""
        k = self.kind
        if k == "constant":
            return self.a
        if k == "uniform":
            return self.a + (self.b - self.a) * rng.random()
        if k == "exponential":
            return rng.expovariate(1.0 / self.a)
        assert self.fn is not None
        return max(float(self.fn(rng)), 0.0)

    def mean(self) -> float | None:
        """The mean in seconds (None for a callable)."""
        return {"constant": self.a, "uniform": (self.a + self.b) / 2, "exponential": self.a}.get(self.kind)

    def __repr__(self) -> str:
        if self.kind == "constant":
            return f"ThinkTime.constant({self.a:g})"
        if self.kind == "uniform":
            return f"ThinkTime.uniform({self.a:g}, {self.b:g})"
        if self.kind == "exponential":
            return f"ThinkTime.exponential(mean={self.a:g})"
        return f"ThinkTime.of({getattr(self.fn, '__name__', 'fn')})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description for run metadata."""
        return {"kind": self.kind, "a": self.a, "b": self.b}


def as_think_time(value: Any, where: str) -> ThinkTime | None:
    """A ``ThinkTime`` from a number (constant), a ThinkTime, a callable, or None."""
    if value is None or isinstance(value, ThinkTime):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < math.inf:
            raise ConfigError(f"{where}: think_time must be >= 0 seconds (got {value!r})")
        return ThinkTime.constant(float(value))
    if callable(value):
        return ThinkTime.of(value)
    raise ConfigError(
        f"{where}: think_time must be seconds, a ThinkTime (e.g. ThinkTime.exponential(0.5)) or a "
        f"callable rng -> seconds (got {type(value).__name__})"
    )


@dataclass(frozen=True, kw_only=True)
class UserGroup:
    """One kind of user: its own users, request mix, think time and share of the load.

    >>> UserGroup(name="uploaders", users=UserPool(5, email_prefix="loadup"),
    ...           mix=RequestMix.tasks({"compress-video": 1}), think_time=0.2, weight=3)  # doctest: +SKIP

    ``users``: a ``UserPool`` or a number of users (``load<name><i>@example.com``). ``weight``:
    the group's share of the open model's arrivals and of the closed model's virtual users
    (relative, like endpoint weights). ``think_time`` (closed model): seconds, a ``ThinkTime`` or a
    callable; None uses the phase's think time. ``region``: a ``Region`` (``taskforge_perf.regions``)
    whose simulated network conditions the group's load traffic goes through.
    """

    name: str
    users: UserPool | int
    mix: RequestMix | None = None
    think_time: ThinkTime | float | Callable[[random.Random], float] | None = None
    weight: float = 1.0
    region: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or not self.name.isprintable():
            raise ConfigError(
                f"UserGroup.name must be a non-empty name such as 'uploaders' (got {self.name!r})"
            )
        where = f"UserGroup {self.name!r}"
        users = self.users
        if isinstance(users, int) and not isinstance(users, bool):
            if users < 1:
                raise ConfigError(f"{where}: users must be a UserPool or a count >= 1 (got {users})")
            if not self.name.isalnum():
                raise ConfigError(
                    f"{where}: users=<count> names users load<name><i>@example.com, so the name must be "
                    "letters and digits; give users=UserPool(...) for other names"
                )
            object.__setattr__(self, "users", UserPool(users, email_prefix=f"load{self.name}"))
        elif not isinstance(users, UserPool):
            raise ConfigError(f"{where}: users must be a UserPool or a count (got {type(users).__name__})")
        if self.mix is None:
            object.__setattr__(self, "mix", RequestMix.taskforge())
        elif not isinstance(self.mix, RequestMix):
            raise ConfigError(f"{where}: mix must be a RequestMix (got {type(self.mix).__name__})")
        object.__setattr__(self, "think_time", as_think_time(self.think_time, where))
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 < w < math.inf:
            raise ConfigError(
                f"{where}: weight must be a finite number > 0 (got {w!r}); weights are relative"
            )
        if self.region is not None and not hasattr(self.region, "open"):
            raise ConfigError(
                f"{where}: region must be a taskforge_perf.Region (got {type(self.region).__name__})"
            )

    @property
    def pool(self) -> UserPool:
        """The group's users."""
        assert isinstance(self.users, UserPool)
        return self.users

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description for run metadata."""
        tt = self.think_time
        return {
            "name": self.name,
            "users": len(self.pool),
            "mix": self.mix.to_dict() if self.mix is not None else None,
            "think_time": tt.to_dict() if isinstance(tt, ThinkTime) else None,
            "weight": self.weight,
            "region": self.region.to_dict() if self.region is not None else None,
        }


def check_groups(groups: Any) -> tuple[UserGroup, ...]:
    """Validate ``LoadTester(groups=...)``: a non-empty list of groups, unique names and emails."""
    if isinstance(groups, UserGroup):
        groups = (groups,)
    if isinstance(groups, str | bytes) or not isinstance(groups, Sequence) or not groups:
        raise ConfigError("groups must be a non-empty list of UserGroup(name=..., users=..., mix=...)")
    for g in groups:
        if not isinstance(g, UserGroup):
            raise ConfigError(f"groups: each item must be a UserGroup (got {type(g).__name__})")
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ConfigError(f"groups: names must be unique (got {names})")
    seen: dict[str, str] = {}
    for g in groups:
        for u in g.pool:
            if u.email in seen:
                raise ConfigError(
                    f"groups {seen[u.email]!r} and {g.name!r} share the user {u.email}; give each group "
                    "its own UserPool(email_prefix=...)"
                )
            seen[u.email] = g.name
    if len({g.pool.signup for g in groups}) > 1:
        raise ConfigError("groups: every group's UserPool must have the same signup= setting")
    return tuple(groups)


def combined_pool(groups: Sequence[UserGroup]) -> UserPool:
    """One ``UserPool`` holding every group's users, each ``User.group`` set to its group."""
    first = groups[0].pool
    pool = UserPool(
        users=[(u.email, u.password) for g in groups for u in g.pool],
        signup=first.signup,
        signup_concurrency=max(g.pool.signup_concurrency for g in groups),
        token_ttl=min(g.pool.token_ttl for g in groups),
        min_ready=sum(g.pool.min_ready for g in groups),
    )
    names = [g.name for g in groups for _ in g.pool]
    for user, name in zip(pool, names, strict=True):
        user.group = name
    return pool


class GroupPicker:
    """Which group sends a request: ``pick(rng)`` by weight (open model), ``for_index(i)`` for the
    closed model's virtual user ``i`` (a fixed interleaving that keeps the shares at every level)."""

    def __init__(self, weights: Sequence[float]) -> None:
        total = float(sum(weights))
        cum, acc = [], 0.0
        for w in weights:
            acc += w
            cum.append(acc / total)
        cum[-1] = 1.0
        self._cum = cum
        self.shares = [w / total for w in weights]
        self._order: list[int] = []
        self._counts = [0] * len(weights)

    def pick(self, rng: random.Random) -> int:
        """A group index drawn in proportion to the weights."""
        return bisect.bisect_right(self._cum, rng.random())

    def for_index(self, i: int) -> int:
        """The group of closed-model virtual user ``i`` (the most under-served group so far)."""
        order, counts, shares = self._order, self._counts, self.shares
        while len(order) <= i:
            n = len(order) + 1
            g = max(range(len(shares)), key=lambda k: shares[k] * n - counts[k])
            counts[g] += 1
            order.append(g)
        return order[i]
