"""Load shapes: phases, plans and the exact arrival schedule. Pure: no I/O, no clock, no sleeping.

A :class:`StressPlan` is a sequence of :class:`Phase` run back to back. Each phase uses the open
model (``rate=`` requests/s, arrivals on a schedule) or the closed model (``concurrency=`` virtual
users, each sending its next request when the previous one ends). ``plan.at(t)`` maps elapsed
seconds to the wanted level; ``plan.arrival_times()`` yields the open-model schedule.

>>> plan = StressPlan([Phase("warmup", 10, rate=50), Phase("peak", 20, rate=200, ramp=True)])
>>> plan.at(20.0).rate
125.0
>>> plan.expected_requests(0)
500
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from taskforge_perf.phase import Level, Model, Phase, PlanError, _ceil, _fmt, _is_number, _round_half_up

if TYPE_CHECKING:
    from pathlib import Path

    import altair as alt
    import polars as pl

__all__ = ["Level", "Phase", "PlanError", "StressPlan"]

# Environment presets of the seed: (concurrent, duration s, warm-up s, users).
_ENV_PRESETS: dict[str, tuple[int, float, float, int]] = {
    "development": (50, 60.0, 10.0, 20),
    "staging": (100, 300.0, 30.0, 50),
    "production": (200, 600.0, 60.0, 100),
}
_ALIASES = {"dev": "development"}
_PHASE_KEYS = frozenset(
    ("name", "duration", "rate", "concurrency", "ramp", "ramp_from", "think_time", "websockets", "mix")
)
PRESET_NAMES: tuple[str, ...] = ("dev", "development", "staging", "production", "stress")


class StressPlan:
    """Phases run back to back, validated on construction.

    >>> plan = StressPlan.preset("stress")
    >>> [p.name for p in plan.phases], plan.duration
    (['warmup', 'ramp-up', 'peak', 'spike', 'cool-down'], 300.0)
    >>> plan.at(100).concurrency
    100
    """

    __slots__ = ("_phases", "_starts", "_from", "_slope", "_cum", "_ws", "_users")

    def __init__(self, phases: Sequence[Phase] | Phase, *, recommended_users: int | None = None) -> None:
        if isinstance(phases, Phase):  # StressPlan(Phase(...)): a plan of one phase
            phases = (phases,)
        if isinstance(phases, str | bytes | Mapping) or not isinstance(phases, Iterable):
            raise PlanError(
                f"StressPlan takes a list of Phase objects (got {type(phases).__name__}); e.g. "
                "StressPlan([Phase('load', 60, rate=100)]); from a dict use StressPlan.from_dict"
            )
        phases = tuple(phases)
        if not phases:
            raise PlanError(
                "StressPlan needs at least one phase; e.g. "
                "StressPlan([Phase('load', 60, rate=100)]) or StressPlan.preset('dev')"
            )
        seen: set[str] = set()
        for i, ph in enumerate(phases):
            if not isinstance(ph, Phase):
                raise PlanError(f"StressPlan phases[{i}] must be a Phase (got {type(ph).__name__})")
            if ph.name in seen:
                raise PlanError(
                    f"phase {ph.name!r}: name is used twice; phase names must be "
                    "unique (rows are labelled by phase)"
                )
            seen.add(ph.name)
        u = recommended_users
        if u is not None and (not isinstance(u, int) or isinstance(u, bool) or u < 1):
            raise PlanError(f"recommended_users must be an integer >= 1 or None (got {u!r})")
        starts, start_levels, slopes, cums, ws = [], [], [], [0.0], []
        t, prev, cur_ws = 0.0, None, None
        for ph in phases:
            if ph.ramp and ph.ramp_from is None and prev is not None and prev.model != ph.model:
                raise PlanError(
                    f"phase {ph.name!r}: ramp=True ramps from the previous phase {prev.name!r}, "
                    f"which uses the {prev.model} model while this one uses the {ph.model} model; "
                    "set ramp=False, give ramp_from=, or use the same model in both phases"
                )
            if ph.ramp:
                a = ph.ramp_from if ph.ramp_from is not None else (prev.level if prev else 0.0)
            else:
                a = ph.level
            b = (ph.level - a) / ph.duration
            starts.append(t)
            start_levels.append(float(a))
            slopes.append(b)
            area = (a + ph.level) / 2 * ph.duration if ph.model == "open" else 0.0
            cums.append(cums[-1] + area)
            cur_ws = ph.websockets if ph.websockets is not None else cur_ws
            ws.append(cur_ws)
            t += ph.duration
            prev = ph
        self._phases: tuple[Phase, ...] = phases
        self._starts: tuple[float, ...] = tuple(starts)
        self._from: tuple[float, ...] = tuple(start_levels)
        self._slope: tuple[float, ...] = tuple(slopes)
        self._cum: tuple[float, ...] = tuple(cums)  # planned arrivals before phase i (and total)
        self._ws: tuple[int | None, ...] = tuple(ws)
        self._users: int | None = recommended_users

    # -- properties ------------------------------------------------------------------------
    @property
    def phases(self) -> tuple[Phase, ...]:
        return self._phases

    @property
    def duration(self) -> float:
        """Total planned seconds."""
        return self._starts[-1] + self._phases[-1].duration

    @property
    def boundaries(self) -> tuple[float, ...]:
        """Start time (s since plan start) of each phase."""
        return self._starts

    @property
    def model(self) -> Literal["open", "closed", "mixed"]:
        models = {p.model for p in self._phases}
        return "mixed" if len(models) > 1 else models.pop()  # type: ignore[return-value]

    @property
    def recommended_users(self) -> int | None:
        """The preset's suggested user-pool size (a hint for ``UserPool(count=...)``), or None."""
        return self._users

    @property
    def users(self) -> int | None:
        """Alias of :attr:`recommended_users`."""
        return self._users

    def __len__(self) -> int:
        return len(self._phases)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StressPlan):
            return NotImplemented
        return (self._phases, self.recommended_users) == (other._phases, other.recommended_users)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        lines = [f"StressPlan({_fmt(self.duration)} s, {self.model}, {len(self)} phases:"]
        for i, ph in enumerate(self._phases):
            s, e = self._starts[i], self._starts[i] + ph.duration
            unit = "/s" if ph.model == "open" else " users"
            lvl = f"{_fmt(ph.level)}{unit}"
            if ph.ramp:
                lvl = f"{_fmt(self._from[i])} -> {lvl} (ramp)"
            extra = f", ws={self._ws[i]}" if self._ws[i] is not None else ""
            lines.append(f"  {ph.name!r}: {_fmt(s)}-{_fmt(e)} s, {lvl}{extra}")
        return "\n".join(lines) + ")"

    # -- levels ----------------------------------------------------------------------------
    def _index(self, t: float) -> int:
        return bisect.bisect_right(self._starts, t) - 1

    def _level(self, i: int, elapsed: float) -> float:
        return self._from[i] + self._slope[i] * elapsed

    def at(self, t: float) -> Level | None:
        """The wanted level at ``t`` seconds since plan start; None once the plan is finished.

        Ramped concurrency is rounded half up to whole users.

        >>> StressPlan([Phase("a", 10, concurrency=0), Phase("b", 10, concurrency=20,
        ...            ramp=True)]).at(15).concurrency
        10
        """
        if not _is_number(t) or math.isnan(t) or t < 0:
            raise PlanError(f"at(t): t must be a number of seconds >= 0 (got {t!r})")
        if t >= self.duration:
            return None
        i = self._index(t)
        ph = self._phases[i]
        elapsed = t - self._starts[i]
        value = self._level(i, elapsed) if ph.ramp else ph.level
        open_ = ph.model == "open"
        return Level(
            phase=ph,
            phase_index=i,
            elapsed_in_phase=elapsed,
            remaining_in_phase=ph.duration - elapsed,
            rate=float(value) if open_ else None,
            concurrency=None if open_ else _round_half_up(value),
            websockets=self._ws[i],
            model=ph.model,
        )

    # -- the open-model schedule -----------------------------------------------------------
    def rate_integral(self, t0: float, t1: float) -> float:
        """Planned open-model arrivals between ``t0`` and ``t1`` (integral of the rate)."""
        return self._cumulative(t1) - self._cumulative(t0)

    def _cumulative(self, t: float) -> float:
        if t <= 0:
            return 0.0
        if t >= self.duration:
            return self._cum[-1]
        i = self._index(t)
        if self._phases[i].model != "open":
            return self._cum[i]
        x = t - self._starts[i]
        return self._cum[i] + self._from[i] * x + self._slope[i] * x * x / 2

    def arrival_times(self, start: float = 0.0, shift: float = 0.0) -> Iterator[float]:
        """Yield intended open-model arrival times (s since plan start), increasing, from ``start``.

        The k-th arrival (k = 0, 1, ...) is the instant the planned count, the integral of the rate
        from 0, reaches k: at constant rate r it is k/r; on a linear ramp the quadratic is solved
        exactly. So the number of arrivals in [0, t) is ceil(integral), i.e. floor within one.
        Closed-model and rate-0 phases yield nothing. O(1) per arrival. ``shift`` is added to every
        time yielded (``start`` stays in plan time): the engine's clock offset, without a second
        generator per arrival.

        >>> list(StressPlan.constant(1, rate=4).arrival_times())
        [0.0, 0.25, 0.5, 0.75]
        """
        if not _is_number(start) or math.isnan(start) or start < 0:
            raise PlanError(f"arrival_times(start): start must be >= 0 (got {start!r})")
        if not _is_number(shift) or not math.isfinite(shift):
            raise PlanError(f"arrival_times(shift): shift must be a finite number of seconds (got {shift!r})")
        if start >= self.duration:
            return
        first = self._index(start)
        for i in range(first, len(self._phases)):
            ph = self._phases[i]
            if ph.model != "open":
                continue
            s0, length, a, b = self._starts[i], ph.duration, self._from[i], self._slope[i]
            c0, c1 = self._cum[i], self._cum[i + 1]
            k = _ceil(c0) if i != first else max(_ceil(c0), math.floor(self._cumulative(start)))
            k_end = _ceil(c1)
            if b == 0.0:
                while k < k_end:
                    x = (k - c0) / a
                    t = s0 + (x if x < length else length)
                    k += 1
                    if t >= start:
                        yield t + shift
            else:
                a2 = a * a
                while k < k_end:
                    x = k - c0
                    if x <= 0.0:
                        tau = 0.0
                    else:
                        # a*tau + b*tau^2/2 = x, in the form stable for b < 0 as well.
                        tau = 2.0 * x / (a + math.sqrt(max(a2 + 2.0 * b * x, 0.0)))
                    t = s0 + min(tau, length)
                    k += 1
                    if t >= start:
                        yield t + shift

    def arrivals(self, t0: float, t1: float) -> list[float]:
        """The intended arrival times in ``[t0, t1)``."""
        out: list[float] = []
        for t in self.arrival_times(t0):
            if t >= t1:
                break
            out.append(t)
        return out

    def expected_requests(self, phase_index: int) -> int | None:
        """Arrivals the schedule plans in an open phase (exactly what arrival_times yields);
        None for a closed phase."""
        if not -len(self._phases) <= phase_index < len(self._phases):
            raise PlanError(
                f"expected_requests: phase_index must be in 0..{len(self) - 1} (got {phase_index})"
            )
        i = phase_index % len(self._phases)
        if self._phases[i].model != "open":
            return None
        return max(0, _ceil(self._cum[i + 1]) - _ceil(self._cum[i]))

    def mean_level(self, phase_index: int) -> float:
        """Mean rate (open) or concurrency (closed) over a phase; a ramp's midpoint."""
        ph = self._phases[phase_index]
        return (self._from[phase_index] + ph.level) / 2 if ph.ramp else ph.level

    # -- constructors ----------------------------------------------------------------------
    @classmethod
    def constant(
        cls,
        duration: float,
        rate: float | None = None,
        concurrency: int | None = None,
        websockets: int | None = None,
        *,
        name: str = "constant",
    ) -> StressPlan:
        """One phase at a constant rate or concurrency: ``StressPlan.constant(60, rate=100)``."""
        return cls([Phase(name, duration, rate=rate, concurrency=concurrency, websockets=websockets)])

    @classmethod
    def ramp(
        cls, duration: float, start: float, end: float, *, model: Model = "open", name: str = "ramp"
    ) -> StressPlan:
        """One linear ramp from ``start`` to ``end`` (req/s, or users when ``model="closed"``)."""
        kw = _model_kw(model, end, "end")
        if not _is_number(start) or not math.isfinite(start) or start < 0:
            raise PlanError(f"ramp: start must be >= 0 (got {start!r})")
        return cls([Phase(name, duration, ramp=True, ramp_from=start, **kw)])

    @classmethod
    def steps(
        cls, start: float, stop: float, step: float, step_duration: float, *, model: Model = "open"
    ) -> StressPlan:
        """Step the level from ``start`` to ``stop`` (inclusive) by ``step`` to find the breaking
        point; phases are named ``"step 1 (100/s)"`` (or ``"step 1 (10 users)"``).

        >>> [p.name for p in StressPlan.steps(100, 300, 100, 10).phases]
        ['step 1 (100/s)', 'step 2 (200/s)', 'step 3 (300/s)']
        """
        for fld, v in (("start", start), ("stop", stop)):
            if not _is_number(v) or not math.isfinite(v) or v < 0:
                raise PlanError(f"steps: {fld} must be >= 0 (got {v!r})")
        if not _is_number(step) or not math.isfinite(step) or step <= 0:
            raise PlanError(f"steps: step must be > 0 (got {step!r}); e.g. steps(100, 500, 100, 30)")
        if stop < start:
            raise PlanError(f"steps: stop ({stop!r}) must be >= start ({start!r})")
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        if n > 10_000:
            raise PlanError(f"steps: {n} steps is too many; use a larger step")
        unit = "/s" if model == "open" else " users"
        phases = []
        for k in range(n):
            lvl = start + k * step
            kw = _model_kw(model, lvl, "start/step")
            phases.append(Phase(f"step {k + 1} ({_fmt(lvl)}{unit})", step_duration, **kw))
        return cls(phases)

    @classmethod
    def preset(cls, name: str) -> StressPlan:
        """A plan from the seed's presets.

        ``"stress"`` is the seed's StressTester exactly (closed model): warmup 10 users 30 s,
        ramp-up 50 users 60 s, peak 100 users 120 s, spike 200 users 30 s, cool-down 25 users 60 s.

        ``"dev"``/``"development"``, ``"staging"``, ``"production"`` take the seed's environment
        settings (concurrent C = 50/100/200, duration D = 60/300/600 s, warm-up W = 10/30/60 s,
        users 20/50/100, exposed as ``recommended_users``) and scale that shape to them: warmup
        W s at 10% of C, then the remaining D - W seconds split 2:4:1:2 as in the seed
        (60:120:30:60) into ramp-up (a linear ramp from the warm-up level to C), peak (C),
        spike (2 x C) and cool-down (25% of C, rounded half up), durations rounded to whole
        seconds with the cool-down absorbing the rounding so the total is exactly D. Staging thus
        has the seed's timings (30/60/120/30/60 s) and levels, except that its ramp-up really
        ramps.
        """
        if not isinstance(name, str):
            raise PlanError(f"preset name must be a string, one of {', '.join(PRESET_NAMES)} (got {name!r})")
        key = _ALIASES.get(name, name)
        if key == "stress":
            return cls(
                [
                    Phase("warmup", 30, concurrency=10),
                    Phase("ramp-up", 60, concurrency=50),
                    Phase("peak", 120, concurrency=100),
                    Phase("spike", 30, concurrency=200),
                    Phase("cool-down", 60, concurrency=25),
                ],
                recommended_users=20,
            )
        if key not in _ENV_PRESETS:
            raise PlanError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
        conc, dur, warm, users = _ENV_PRESETS[key]
        rest = dur - warm
        ramp_d, peak_d, spike_d = round(rest * 2 / 9), round(rest * 4 / 9), round(rest / 9)
        cool_d = rest - ramp_d - peak_d - spike_d
        warm_c = max(1, _round_half_up(conc * 0.1))
        return cls(
            [
                Phase("warmup", warm, concurrency=warm_c),
                Phase("ramp-up", ramp_d, concurrency=conc, ramp=True),
                Phase("peak", peak_d, concurrency=conc),
                Phase("spike", spike_d, concurrency=2 * conc),
                Phase("cool-down", cool_d, concurrency=max(1, _round_half_up(conc * 0.25))),
            ],
            recommended_users=users,
        )

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (for run meta). A mix override is kept as its ``repr`` only."""
        phases = []
        for ph in self._phases:
            d: dict[str, Any] = {
                "name": ph.name,
                "duration": ph.duration,
                "rate": ph.rate,
                "concurrency": ph.concurrency,
                "ramp": ph.ramp,
                "ramp_from": ph.ramp_from,
                "think_time": ph.think_time,
                "websockets": ph.websockets,
                "mix": None if ph.mix is None else repr(ph.mix),
            }
            phases.append(d)
        return {
            "phases": phases,
            "duration": self.duration,
            "model": self.model,
            "recommended_users": self.recommended_users,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, mixes: Mapping[str, object] | None = None) -> StressPlan:
        """Rebuild a plan from :meth:`to_dict`; mix overrides come back from ``mixes`` (by phase
        name), since only their repr was stored."""
        if not isinstance(data, Mapping) or "phases" not in data:
            raise PlanError(
                "from_dict: expected a mapping with a 'phases' list, e.g. "
                "{'phases': [{'name': 'load', 'duration': 60, 'rate': 100}]}"
            )
        raw = data["phases"]
        if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Iterable):
            raise PlanError(f"from_dict: 'phases' must be a list of phase dicts (got {type(raw).__name__})")
        mixes = mixes or {}
        phases = []
        for i, d in enumerate(raw):
            if not isinstance(d, Mapping):
                raise PlanError(
                    f"from_dict: phases[{i}] must be a dict such as "
                    f"{{'name': 'load', 'duration': 60, 'rate': 100}} (got {type(d).__name__})"
                )
            missing = [k for k in ("name", "duration") if k not in d]
            if missing:
                raise PlanError(
                    f"from_dict: phases[{i}] lacks {' and '.join(repr(k) for k in missing)}; each phase "
                    "needs a name, a duration (s) and rate= or concurrency=, e.g. "
                    "{'name': 'load', 'duration': 60, 'rate': 100}"
                )
            unknown = sorted(set(d) - _PHASE_KEYS)
            if unknown:
                raise PlanError(
                    f"from_dict: phases[{i}] has unknown key(s) {', '.join(map(repr, unknown))}; "
                    f"use {', '.join(sorted(_PHASE_KEYS))}"
                )
            phases.append(
                Phase(
                    d["name"],
                    d["duration"],
                    rate=d.get("rate"),
                    concurrency=d.get("concurrency"),
                    ramp=d.get("ramp", False),
                    ramp_from=d.get("ramp_from"),
                    think_time=d.get("think_time", 0.0),
                    websockets=d.get("websockets"),
                    mix=mixes.get(d["name"]) if isinstance(d["name"], str) else None,
                )
            )
        return cls(phases, recommended_users=data.get("recommended_users"))

    # -- frames and charts -----------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> StressPlan:
        """Load a plan from a TOML file of ``[[phases]]`` tables (or ``preset = "dev"``); errors
        name the file, the line and the field. See ``taskforge_perf.toml_io`` and ``examples/plan.toml``.
        """
        from taskforge_perf.toml_io import plan_from_toml

        return plan_from_toml(path)

    def to_frame(self, step: float = 1.0) -> pl.DataFrame:
        """The planned level sampled every ``step`` seconds, plus each phase's start and end
        (so steps and ramps draw exactly). Columns: t, phase, phase_index, model, level, rate,
        concurrency, websockets."""
        import polars as pl

        if not _is_number(step) or not math.isfinite(step) or step <= 0:
            raise PlanError(f"to_frame: step must be > 0 seconds (got {step!r})")
        rows: list[tuple[float, str, int, str, float, int | None]] = []
        for i, ph in enumerate(self._phases):
            s, n = self._starts[i], int(math.floor(ph.duration / step + 1e-9))
            xs = [k * step for k in range(n + 1) if k * step < ph.duration] + [ph.duration]
            for x in xs:
                v = self._level(i, x) if ph.ramp else ph.level
                rows.append((s + x, ph.name, i, ph.model, float(v), self._ws[i]))
        t, name, idx, model, level, ws = zip(*rows, strict=True)
        return pl.DataFrame(
            {
                "t": t,
                "phase": name,
                "phase_index": idx,
                "model": model,
                "level": level,
                "websockets": ws,
            },
            schema={
                "t": pl.Float64,
                "phase": pl.String,
                "phase_index": pl.Int32,
                "model": pl.String,
                "level": pl.Float64,
                "websockets": pl.Int64,
            },
        ).with_columns(
            rate=pl.when(pl.col("model") == "open").then(pl.col("level")),
            concurrency=pl.when(pl.col("model") == "closed").then(pl.col("level")),
        )

    def chart(self, step: float = 1.0) -> alt.LayerChart:
        """An Altair chart of the planned level over time with shaded, labelled phase bands."""
        from taskforge_perf.plan_chart import plan_chart

        return plan_chart(self, step)


def _model_kw(model: str, level: float, fld: str) -> dict[str, Any]:
    if model == "open":
        return {"rate": level}
    if model == "closed":
        if not float(level).is_integer():
            raise PlanError(f"{fld} must be a whole number of users for model='closed' (got {level!r})")
        return {"concurrency": int(level)}
    raise PlanError(f"model must be 'open' or 'closed' (got {model!r})")
