"""The small spec syntax of the target's knobs: durations, delay distributions, maps, stalls.

See :mod:`taskforge_perf.target.config` for the grammar.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|ms|s)\s*$")


def parse_duration(text: str, *, what: str = "duration", bare_unit: str | None = None) -> float:
    """Parse ``"20ms"`` / ``"0.5s"`` / ``"250us"`` into seconds.

    >>> parse_duration("20ms")
    0.02
    """
    m = _DURATION_RE.match(text)
    if m is None:
        if bare_unit is not None:
            try:
                return float(text) * _UNITS[bare_unit]
            except ValueError:
                pass
        raise ValueError(f"{what}: cannot read {text!r} as a duration; write e.g. '20ms' or '1.5s'")
    return float(m.group(1)) * _UNITS[m.group(2)]


def fmt_seconds(seconds: float) -> str:
    return f"{seconds * 1e3:g}ms"


@dataclass(frozen=True, slots=True)
class Delay:
    """A delay distribution in seconds; ``str(delay)`` gives back its spec.

    >>> Delay.parse("uniform:5ms:15ms")
    Delay('uniform:5ms:15ms')
    """

    kind: str  # fixed | exp | uniform | normal
    a: float
    b: float = 0.0

    @classmethod
    def parse(cls, spec: str, *, what: str = "delay") -> Delay:
        parts = spec.strip().split(":")
        kind = parts[0] if len(parts) > 1 else "fixed"
        args = parts[1:] if len(parts) > 1 else parts
        want = {"fixed": 1, "exp": 1, "uniform": 2, "normal": 2}.get(kind)
        if want is None:
            raise ValueError(
                f"{what}: unknown distribution {kind!r} in {spec!r}; use a fixed '20ms', "
                "'exp:20ms', 'uniform:5ms:15ms' or 'normal:20ms:5ms'"
            )
        if len(args) != want:
            raise ValueError(f"{what}: {kind!r} takes {want} duration(s) in {spec!r}")
        vals = [parse_duration(x, what=what) for x in args]
        if kind == "uniform" and vals[1] < vals[0]:
            raise ValueError(f"{what}: uniform low must not exceed high in {spec!r}")
        return cls(kind, vals[0], vals[1] if want == 2 else 0.0)

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "exp":
            return rng.expovariate(1.0 / self.a) if self.a > 0 else 0.0
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return max(0.0, rng.gauss(self.a, self.b))

    @property
    def mean(self) -> float:
        """Expected value in seconds (the clipped normal is approximated by its mean)."""
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a

    def scaled(self, factor: float) -> Delay:
        return Delay(self.kind, self.a * factor, self.b * factor)

    def __str__(self) -> str:
        if self.kind == "fixed":
            return fmt_seconds(self.a)
        if self.kind == "exp":
            return f"exp:{fmt_seconds(self.a)}"
        return f"{self.kind}:{fmt_seconds(self.a)}:{fmt_seconds(self.b)}"

    def __repr__(self) -> str:
        return f"Delay({str(self)!r})"


def entries(value: Any) -> list[tuple[str, str]]:
    """Normalise a mapping, a ``"k=v,k=v"`` string or an iterable of either into pairs."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [(str(k).strip(), str(v).strip()) for k, v in value.items()]
    if isinstance(value, str):
        out = []
        for item in value.split(","):
            if not item.strip():
                continue
            if "=" not in item:
                raise ValueError(f"missing '=' in {item!r}")
            k, v = item.rsplit("=", 1)
            out.append((k.strip(), v.strip()))
        return out
    out = []
    for item in value:
        if isinstance(item, tuple) and len(item) == 2:
            out.append((str(item[0]).strip(), str(item[1]).strip()))
        else:
            out.extend(entries(item))
    return out


def check_key(key: str, allowed: Iterable[str], fld: str) -> str:
    key = " ".join(key.split())
    allowed = tuple(allowed)
    if key != "*" and key not in allowed:
        raise ValueError(f"{fld}: unknown key {key!r}; use '*' or one of {', '.join(allowed)}")
    return key


def rate(value: Any, fld: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{fld}: {value!r} is not a number; give a fraction in [0, 1]") from None
    if not 0.0 <= v <= 1.0 or math.isnan(v):
        raise ValueError(f"{fld}: {v} is outside [0, 1]; give a fraction such as 0.05")
    return v


def stalls(value: Any) -> tuple[tuple[float, float], ...]:
    if value is None:
        return ()
    items: list[Any] = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if isinstance(item, str):
            if not item.strip():
                continue
            parts = item.split(":")
            if len(parts) != 2:
                raise ValueError(f"stalls: {item!r} is not START:DURATION; write e.g. '2:3'")
            start, dur = (parse_duration(p, what="stalls", bare_unit="s") for p in parts)
        else:
            start, dur = float(item[0]), float(item[1])
        if start < 0 or dur <= 0:
            raise ValueError(f"stalls: {item!r} needs START >= 0 and DURATION > 0 (seconds)")
        out.append((start, dur))
    return tuple(sorted(out))
