"""Pure tests of the knob syntax (no sockets)."""

from __future__ import annotations

import random
import statistics

import pytest

from taskforge_perf.target import Delay, TargetConfig, parse_prometheus
from taskforge_perf.target.specs import parse_duration


def test_durations_need_a_unit() -> None:
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1.5s") == 1.5 and parse_duration("250us") == pytest.approx(250e-6)
    with pytest.raises(ValueError, match="'20ms'"):
        parse_duration("20")


@pytest.mark.parametrize("spec", ["20ms", "exp:20ms", "uniform:5ms:15ms", "normal:20ms:5ms"])
def test_delay_specs_round_trip(spec: str) -> None:
    assert str(Delay.parse(spec)) == spec


def test_delay_distributions() -> None:
    rng = random.Random(1)
    exp = [Delay.parse("exp:20ms").sample(rng) for _ in range(20000)]
    assert statistics.fmean(exp) == pytest.approx(0.02, rel=0.05)
    uni = [Delay.parse("uniform:5ms:15ms").sample(rng) for _ in range(2000)]
    assert 0.005 <= min(uni) and max(uni) <= 0.015
    assert min(Delay.parse("normal:1ms:5ms").sample(rng) for _ in range(200)) == 0.0
    with pytest.raises(ValueError, match="unknown distribution"):
        Delay.parse("pareto:1ms")


def test_per_endpoint_lookup_and_candidate_profile() -> None:
    cfg = TargetConfig(latency="*=5ms, GET /health=uniform:1ms:3ms", error_rate={"*": 0.1})
    assert str(cfg.latency_for("GET /health")) == "uniform:1ms:3ms"
    assert str(cfg.latency_for("POST /tasks")) == "5ms"
    assert cfg.error_rate_for("POST /auth/login") == 0.1
    cand = TargetConfig(profile="candidate")
    assert cand.latency_for("POST /tasks") == Delay("fixed", pytest.approx(0.006))
    assert cand.latency_for("GET /health") is None
    slow = TargetConfig(profile="candidate", latency="POST /tasks=exp:20ms")
    assert slow.latency_for("POST /tasks").mean == pytest.approx(0.026 + 0.006)


def test_outbox_defaults_follow_quirks() -> None:
    assert TargetConfig().effective_outbox_interval == 0.0
    assert TargetConfig(real_quirks=True).effective_outbox_interval == 5.0
    assert TargetConfig(real_quirks=True, outbox_interval=0.2).effective_outbox_interval == 0.2
    # The real outbox-publisher: first pass 60 s after start, one consumer per queue.
    real = TargetConfig(real_quirks=True)
    assert real.effective_outbox_first_delay == 60.0 and real.effective_worker_concurrency == 1
    assert TargetConfig().effective_worker_concurrency == 4
    fast = TargetConfig(real_quirks=True, outbox_time_scale=0.05)
    assert (fast.effective_outbox_first_delay, fast.effective_outbox_interval) == pytest.approx((3.0, 0.25))
    # An explicit interval keeps its old meaning: the first pass one interval after start.
    assert TargetConfig(real_quirks=True, outbox_interval=0.2).effective_outbox_first_delay == 0.2
    with pytest.raises(ValueError, match="outbox_time_scale"):
        TargetConfig(outbox_time_scale=0)
    with pytest.raises(ValueError, match="worker_concurrency"):
        TargetConfig(worker_concurrency=0)
    with pytest.raises(TypeError):
        TargetConfig(5)  # type: ignore[misc]  # keyword-only


def test_parse_prometheus() -> None:
    text = '# HELP x\nreq_total{route="POST /tasks",status="202"} 4\nopen 2\n'
    assert parse_prometheus(text) == {"req_total": {("POST /tasks", "202"): 4.0}, "open": {(): 2.0}}


def test_public_names() -> None:
    import taskforge_perf.target as target

    assert sorted(target.__all__) == [
        "Delay",
        "ReferenceTarget",
        "TargetConfig",
        "TargetStartError",
        "parse_prometheus",
    ]
