"""The generator-health summary names the cause of a saturation, and a "machine" cause says what
to do about it (the tester's thread waited while other processes ran on its core)."""

from __future__ import annotations

from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.health import LATENESS_BUCKET_NS, MACHINE_ADVICE, HealthProbe


def probe(lag_ms: float, own_ms: float, late_ms: float) -> HealthProbe:
    p = HealthProbe(Clock(), [])
    p._lags.extend([lag_ms] * 200)
    p._own.extend([own_ms] * 200)
    p._late_hist[int(late_ms * 1e6 // LATENESS_BUCKET_NS)] = 1000
    p._late_n = 1000
    return p


def test_a_machine_cause_carries_the_advice() -> None:
    s = probe(lag_ms=12.0, own_ms=0.4, late_ms=9.0).summary()
    assert s["saturated"] and s["causes"] == ["machine"]
    assert len(s["reasons"]) == 2 and all(r.endswith(MACHINE_ADVICE) for r in s["reasons"])
    assert "taskset" in MACHINE_ADVICE and "chrt" in MACHINE_ADVICE


def test_the_testers_own_cause_does_not() -> None:
    s = probe(lag_ms=12.0, own_ms=11.0, late_ms=9.0).summary()
    assert s["saturated"] and s["causes"] == ["tester"]
    assert not any(MACHINE_ADVICE in r for r in s["reasons"])


def test_a_healthy_generator_has_no_reason() -> None:
    s = probe(lag_ms=0.5, own_ms=0.4, late_ms=0.5).summary()
    assert not s["saturated"] and s["reasons"] == []
