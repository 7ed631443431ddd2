"""A phase of load: one stretch at a rate (open model) or a concurrency (closed model). Pure.

>>> Phase("peak", 60, rate=200, ramp=True)
Phase('peak', 60, rate=200, ramp=True)
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, field
from typing import Literal

from taskforge_perf.errors import ConfigError

__all__ = ["RESERVED_PHASE_NAMES", "Level", "Model", "Phase", "PlanError"]

Model = Literal["open", "closed"]

#: Phase labels the engine gives its own rows (sign-up/login before the load, logout after it);
#: analysis leaves them out of the load, so a plan phase may not use them.
RESERVED_PHASE_NAMES: tuple[str, ...] = ("setup", "teardown")


class PlanError(ConfigError):
    """An invalid phase or plan; the message names the phase, the field and the fix."""


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _ceil(x: float) -> int:
    # ceil that forgives float noise: 10 s x 0.3/s = 3.0000000000000004 plans 3 arrivals, not 4.
    return math.ceil(x - 1e-9 * max(1.0, abs(x)))


@dataclass(frozen=True, slots=True, repr=False)
class Phase:
    """One stretch of load: ``Phase("peak", 60, rate=200, ramp=True)``.

    Set exactly one of ``rate`` (open model, requests/s) or ``concurrency`` (closed model, virtual
    users). ``ramp=True`` ramps linearly from the previous phase's level (0 for the first phase, or
    ``ramp_from`` when given) to this phase's level over its duration. ``websockets`` sets the
    WebSocket connection count from this phase on (None keeps the previous count). ``mix`` is an
    optional request-mix override, opaque to the plan.
    """

    name: str
    duration: float
    _: KW_ONLY
    rate: float | None = None
    concurrency: int | None = None
    ramp: bool = False
    ramp_from: float | None = None
    think_time: float = 0.0
    mix: object | None = field(default=None, hash=False)
    websockets: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise PlanError(
                f"Phase name must be a non-empty string (got {self.name!r}); "
                "name it, e.g. Phase('peak', 60, rate=100)"
            )
        if self.name.strip().lower() in RESERVED_PHASE_NAMES:
            raise PlanError(
                f"Phase name {self.name!r} is reserved: the engine labels its sign-up/login and "
                "logout rows 'setup' and 'teardown', and the analysis leaves those out of the "
                "load; name the phase differently, e.g. 'warmup' or 'cooldown'"
            )
        p = f"phase {self.name!r}"
        d = self.duration
        if not _is_number(d) or not math.isfinite(d) or d <= 0:
            raise PlanError(
                f"{p}: duration must be a number of seconds > 0 (got {d!r}); "
                "give the phase a positive length or drop it"
            )
        if self.rate is not None and self.concurrency is not None:
            raise PlanError(f"{p}: set either rate= (open model) or concurrency= (closed model), not both")
        if self.rate is None and self.concurrency is None:
            raise PlanError(
                f"{p}: set rate= (open model, requests/s) or concurrency= (closed "
                "model, virtual users); use rate=0 for an idle phase"
            )
        if self.rate is not None:
            r = self.rate
            if not _is_number(r) or not math.isfinite(r) or r < 0:
                raise PlanError(f"{p}: rate must be >= 0 (got {r!r}); use 0 for an idle phase")
            if self.think_time:
                raise PlanError(
                    f"{p}: think_time applies to the closed model only; drop it or "
                    "use concurrency= instead of rate="
                )
        if self.concurrency is not None:
            c = self.concurrency
            if not isinstance(c, int) or isinstance(c, bool) or c < 0:
                raise PlanError(
                    f"{p}: concurrency must be an integer >= 0 (got {c!r}); use 0 for an idle phase"
                )
        if not isinstance(self.ramp, bool):
            raise PlanError(f"{p}: ramp must be True or False (got {self.ramp!r})")
        if self.ramp_from is not None:
            if not self.ramp:
                raise PlanError(f"{p}: ramp_from needs ramp=True; set ramp=True or drop ramp_from")
            rf = self.ramp_from
            if not _is_number(rf) or not math.isfinite(rf) or rf < 0:
                raise PlanError(f"{p}: ramp_from must be >= 0 (got {rf!r})")
        t = self.think_time
        if not _is_number(t) or not math.isfinite(t) or t < 0:
            raise PlanError(f"{p}: think_time must be >= 0 seconds (got {t!r}); use 0 for none")
        w = self.websockets
        if w is not None and (not isinstance(w, int) or isinstance(w, bool) or w < 0):
            raise PlanError(
                f"{p}: websockets must be an integer >= 0 (got {w!r}); "
                "use None to keep the previous phase's count"
            )

    @property
    def model(self) -> Model:
        """``"open"`` when the phase sets a rate, ``"closed"`` when it sets a concurrency."""
        return "open" if self.rate is not None else "closed"

    @property
    def level(self) -> float:
        """The phase's (end) level: its rate or its concurrency."""
        return float(self.rate if self.rate is not None else self.concurrency)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        parts = [repr(self.name), _fmt(self.duration)]
        parts.append(
            f"rate={_fmt(self.rate)}" if self.rate is not None else f"concurrency={self.concurrency}"
        )
        if self.ramp:
            parts.append("ramp=True")
        if self.ramp_from is not None:
            parts.append(f"ramp_from={_fmt(self.ramp_from)}")
        if self.think_time:
            parts.append(f"think_time={_fmt(self.think_time)}")
        if self.websockets is not None:
            parts.append(f"websockets={self.websockets}")
        if self.mix is not None:
            parts.append(f"mix={self.mix!r}")
        return f"Phase({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class Level:
    """The wanted load at one instant of a plan (see :meth:`StressPlan.at`)."""

    phase: Phase
    phase_index: int
    elapsed_in_phase: float
    remaining_in_phase: float
    rate: float | None
    concurrency: int | None
    websockets: int | None
    model: Model
