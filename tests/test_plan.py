"""StressPlan / Phase: pure schedule maths, tested without sleeping."""

from __future__ import annotations

import json
import math

import pytest

from taskforge_perf.plan import Level, Phase, PlanError, StressPlan

pytestmark = pytest.mark.timeout(10)


def two_phase() -> StressPlan:
    return StressPlan([Phase("warmup", 10, rate=50), Phase("peak", 20, rate=200, ramp=True)])


# -- at(t) ----------------------------------------------------------------------------------
def test_at_start_boundaries_and_end() -> None:
    plan = two_phase()
    lvl = plan.at(0)
    assert isinstance(lvl, Level)
    assert (lvl.phase.name, lvl.phase_index, lvl.rate, lvl.model) == ("warmup", 0, 50.0, "open")
    assert lvl.elapsed_in_phase == 0 and lvl.remaining_in_phase == 10
    just_before = plan.at(9.999999)
    assert just_before is not None and just_before.phase_index == 0
    at_boundary = plan.at(10.0)
    assert at_boundary is not None and at_boundary.phase.name == "peak"
    assert at_boundary.rate == 50.0  # the ramp starts at the previous level
    assert plan.at(30.0) is None and plan.at(1e9) is None
    assert plan.boundaries == (0.0, 10.0) and plan.duration == 30.0


def test_ramp_values_are_exact() -> None:
    plan = two_phase()
    assert plan.at(15).rate == 87.5  # type: ignore[union-attr]
    assert plan.at(20).rate == 125.0  # type: ignore[union-attr]
    lvl = plan.at(25)
    assert lvl is not None and lvl.rate == 162.5 and lvl.remaining_in_phase == 5


def test_first_phase_ramp_starts_at_zero_and_ramp_down() -> None:
    plan = StressPlan([Phase("up", 10, rate=100, ramp=True), Phase("down", 10, rate=0, ramp=True)])
    assert plan.at(0).rate == 0.0  # type: ignore[union-attr]
    assert plan.at(5).rate == 50.0  # type: ignore[union-attr]
    assert plan.at(10).rate == 100.0  # type: ignore[union-attr]
    assert plan.at(17.5).rate == 25.0  # type: ignore[union-attr]


def test_closed_ramp_rounds_half_up_and_websockets_carry_over() -> None:
    plan = StressPlan(
        [
            Phase("a", 10, concurrency=10, websockets=5),
            Phase("b", 10, concurrency=20, ramp=True),
            Phase("c", 10, concurrency=3, think_time=0.5, websockets=0),
        ]
    )
    assert plan.model == "closed"
    b = plan.at(15)
    assert b is not None and b.concurrency == 15 and b.rate is None and b.websockets == 5
    assert plan.at(10.5).concurrency == 11  # type: ignore[union-attr]  # 10.5 -> 11
    assert plan.at(25).websockets == 0  # type: ignore[union-attr]


def test_at_rejects_negative_and_nan() -> None:
    with pytest.raises(PlanError, match="t must be"):
        two_phase().at(-0.1)
    with pytest.raises(PlanError, match="t must be"):
        two_phase().at(math.nan)


def test_mixed_model_plan() -> None:
    plan = StressPlan([Phase("open", 5, rate=10), Phase("closed", 5, concurrency=4)])
    assert plan.model == "mixed"
    assert plan.at(6).model == "closed"  # type: ignore[union-attr]
    assert plan.expected_requests(1) is None


# -- arrival schedule -----------------------------------------------------------------------
def test_constant_rate_arrivals_are_k_over_r() -> None:
    plan = StressPlan.constant(2, rate=4)
    assert list(plan.arrival_times()) == [k / 4 for k in range(8)]
    assert plan.expected_requests(0) == 8


@pytest.mark.parametrize(
    "plan",
    [
        StressPlan.constant(10, rate=37.3),
        StressPlan.ramp(10, 0, 500),
        StressPlan.ramp(10, 300, 20),
        StressPlan(
            [
                Phase("a", 3, rate=7.5),
                Phase("idle", 2, concurrency=3),
                Phase("b", 4, rate=90, ramp=True, ramp_from=10),
                Phase("c", 2.5, rate=0, ramp=True),
                Phase("d", 1, rate=0.3),
            ]
        ),
    ],
)
def test_arrival_count_matches_integral_and_is_monotone(plan: StressPlan) -> None:
    times = list(plan.arrival_times())
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert times[0] >= 0 and times[-1] < plan.duration
    total = plan.rate_integral(0, plan.duration)
    assert abs(len(times) - math.floor(total)) <= 1
    assert len(times) == sum(plan.expected_requests(i) or 0 for i in range(len(plan)))
    for k in range(1, 200):
        t = plan.duration * k / 200
        n = sum(1 for x in times if x < t)
        assert abs(n - math.floor(plan.rate_integral(0, t))) <= 1, t


def test_ramp_arrivals_solve_the_quadratic_exactly() -> None:
    plan = StressPlan.ramp(10, 0, 100)  # rate 10 t, integral 5 t^2
    times = list(plan.arrival_times())
    assert len(times) == 500
    for k, t in enumerate(times):
        assert t == pytest.approx(math.sqrt(k / 5), abs=1e-12)


def test_no_float_noise_extra_arrival() -> None:
    plan = StressPlan.constant(10, rate=0.3)  # 10 * 0.3 = 3.0000000000000004 in floats
    assert plan.expected_requests(0) == 3
    assert len(list(plan.arrival_times())) == 3


def test_arrival_times_from_start_and_window() -> None:
    plan = two_phase()
    everything = list(plan.arrival_times())
    later = list(plan.arrival_times(12.345))
    assert later == [t for t in everything if t >= 12.345]
    assert plan.arrivals(5, 11) == [t for t in everything if 5 <= t < 11]
    assert list(plan.arrival_times(30)) == []
    with pytest.raises(PlanError, match="start must be"):
        next(plan.arrival_times(-1))


def test_shifted_arrival_times_are_the_plans_plus_the_shift() -> None:
    plan = two_phase()
    offset = 1234.5678  # a clock offset, as the engine passes it
    assert list(plan.arrival_times(shift=offset)) == [t + offset for t in plan.arrival_times()]
    assert list(plan.arrival_times(12.345, shift=offset)) == [t + offset for t in plan.arrival_times(12.345)]
    for bad in (float("nan"), float("inf"), "1", None):
        with pytest.raises(PlanError, match="shift must be"):
            next(plan.arrival_times(shift=bad))  # type: ignore[arg-type]


def test_arrival_generator_is_fast() -> None:
    plan = StressPlan.ramp(10, 0, 16_000)  # 80,000 arrivals
    import time

    t0 = time.perf_counter()
    n = sum(1 for _ in plan.arrival_times())
    assert n == 80_000
    assert time.perf_counter() - t0 < 1.0  # ~0.6 us per arrival here


# -- constructors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "conc", "duration", "warm", "users"),
    [
        ("dev", 50, 60, 10, 20),
        ("development", 50, 60, 10, 20),
        ("staging", 100, 300, 30, 50),
        ("production", 200, 600, 60, 100),
    ],
)
def test_environment_presets(name: str, conc: int, duration: float, warm: float, users: int) -> None:
    plan = StressPlan.preset(name)
    assert plan.duration == duration and plan.recommended_users == users == plan.users
    assert [p.name for p in plan.phases] == ["warmup", "ramp-up", "peak", "spike", "cool-down"]
    assert plan.model == "closed"
    warmup, ramp, peak, spike, cool = plan.phases
    assert warmup.duration == warm and warmup.concurrency == round(conc / 10)
    assert ramp.ramp and ramp.concurrency == conc
    assert peak.concurrency == conc and spike.concurrency == 2 * conc
    assert cool.concurrency == math.floor(conc / 4 + 0.5)
    assert all(float(p.duration).is_integer() for p in plan.phases)


def test_staging_has_the_seed_timings_and_stress_is_the_seed_exactly() -> None:
    staging = StressPlan.preset("staging")
    assert [p.duration for p in staging.phases] == [30, 60, 120, 30, 60]
    stress = StressPlan.preset("stress")
    assert [(p.name, p.concurrency, p.duration, p.ramp) for p in stress.phases] == [
        ("warmup", 10, 30, False),
        ("ramp-up", 50, 60, False),
        ("peak", 100, 120, False),
        ("spike", 200, 30, False),
        ("cool-down", 25, 60, False),
    ]
    assert stress.duration == 300


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(PlanError, match="unknown preset 'qa'.*dev.*staging.*production.*stress"):
        StressPlan.preset("qa")


def test_constant_ramp_steps() -> None:
    c = StressPlan.constant(30, concurrency=8, websockets=4)
    assert c.at(0).concurrency == 8 and c.at(0).websockets == 4  # type: ignore[union-attr]
    r = StressPlan.ramp(10, 100, 200)
    assert r.at(0).rate == 100 and r.at(5).rate == 150  # type: ignore[union-attr]
    assert r.expected_requests(0) == 1500
    rc = StressPlan.ramp(10, 2, 12, model="closed")
    assert rc.at(5).concurrency == 7  # type: ignore[union-attr]
    s = StressPlan.steps(100, 400, 100, 5)
    assert [p.name for p in s.phases] == [
        "step 1 (100/s)",
        "step 2 (200/s)",
        "step 3 (300/s)",
        "step 4 (400/s)",
    ]
    assert s.duration == 20 and s.at(12).rate == 300  # type: ignore[union-attr]
    sc = StressPlan.steps(10, 30, 10, 5, model="closed")
    assert sc.phases[1].name == "step 2 (20 users)" and sc.phases[1].concurrency == 20


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: StressPlan.steps(100, 50, 10, 5), "stop"),
        (lambda: StressPlan.steps(100, 200, 0, 5), "step must be > 0"),
        (lambda: StressPlan.steps(100, 200, 50, 0), "duration must be"),
        (lambda: StressPlan.steps(1, 2, 0.5, 5, model="closed"), "whole number of users"),
        (
            lambda: StressPlan.ramp(10, 0, 5, model="sideways"),  # type: ignore[arg-type]
            "model must be 'open' or 'closed'",
        ),
        (lambda: StressPlan.ramp(10, -1, 5), "start must be >= 0"),
    ],
)
def test_constructor_errors(call: object, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        call()  # type: ignore[operator]


# -- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "pieces"),
    [
        (
            {"name": "peak", "duration": 10, "rate": -5},
            ["phase 'peak'", "rate must be >= 0", "got -5", "use 0 for an idle phase"],
        ),
        (
            {"name": "peak", "duration": 10, "rate": 5, "concurrency": 3},
            [
                "phase 'peak'",
                "set either rate= (open model) or concurrency= (closed model), not both",
            ],
        ),
        ({"name": "peak", "duration": 10}, ["phase 'peak'", "set rate=", "concurrency="]),
        (
            {"name": "peak", "duration": 0, "rate": 5},
            ["phase 'peak'", "duration must be", "> 0", "got 0"],
        ),
        ({"name": "peak", "duration": -3, "rate": 5}, ["phase 'peak'", "duration", "got -3"]),
        ({"name": "peak", "duration": math.inf, "rate": 5}, ["phase 'peak'", "duration"]),
        ({"name": "", "duration": 10, "rate": 5}, ["Phase name", "non-empty"]),
        ({"name": "   ", "duration": 10, "rate": 5}, ["Phase name"]),
        (
            {"name": "peak", "duration": 10, "concurrency": -1},
            ["phase 'peak'", "concurrency must be an integer >= 0", "got -1"],
        ),
        (
            {"name": "peak", "duration": 10, "concurrency": 2.5},
            ["phase 'peak'", "concurrency must be an integer"],
        ),
        ({"name": "peak", "duration": 10, "rate": math.nan}, ["phase 'peak'", "rate must be >= 0"]),
        (
            {"name": "peak", "duration": 10, "concurrency": 5, "think_time": -1},
            ["phase 'peak'", "think_time must be >= 0"],
        ),
        (
            {"name": "peak", "duration": 10, "rate": 5, "think_time": 1},
            ["phase 'peak'", "think_time applies to the closed model"],
        ),
        (
            {"name": "peak", "duration": 10, "rate": 5, "websockets": -2},
            ["phase 'peak'", "websockets must be an integer >= 0"],
        ),
        (
            {"name": "peak", "duration": 10, "rate": 5, "ramp_from": 1},
            ["phase 'peak'", "ramp_from needs ramp=True"],
        ),
    ],
)
def test_phase_validation_messages(kwargs: dict[str, object], pieces: list[str]) -> None:
    with pytest.raises(PlanError) as info:
        Phase(**kwargs)  # type: ignore[arg-type]
    for piece in pieces:
        assert piece in str(info.value)


def test_plan_validation_messages() -> None:
    with pytest.raises(PlanError, match="at least one phase"):
        StressPlan([])
    with pytest.raises(PlanError, match="phase 'a': name is used twice"):
        StressPlan([Phase("a", 1, rate=1), Phase("a", 1, rate=2)])
    with pytest.raises(PlanError) as info:
        StressPlan([Phase("warm", 5, concurrency=5), Phase("peak", 5, rate=100, ramp=True)])
    msg = str(info.value)
    assert "phase 'peak'" in msg and "'warm'" in msg and "ramp" in msg and "closed" in msg
    with pytest.raises(PlanError, match=r"phases\[0\] must be a Phase"):
        StressPlan([{"name": "x"}])  # type: ignore[list-item]
    with pytest.raises(PlanError, match="phase_index"):
        two_phase().expected_requests(5)


def test_phase_is_frozen_and_positional_only_for_name_and_duration() -> None:
    ph = Phase("warmup", 10, rate=50)
    with pytest.raises(AttributeError):
        ph.rate = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Phase("warmup", 10, 50)  # type: ignore[misc]
    assert repr(ph) == "Phase('warmup', 10, rate=50)"


# -- serialisation, frames, charts ------------------------------------------------------------
def test_to_dict_round_trip_is_json_safe() -> None:
    mix = object()
    plan = StressPlan(
        [
            Phase("a", 5, concurrency=3, think_time=0.2, websockets=2),
            Phase("b", 5, concurrency=9, ramp=True, mix=mix),
        ],
        recommended_users=7,
    )
    data = json.loads(json.dumps(plan.to_dict()))
    back = StressPlan.from_dict(data, mixes={"b": mix})
    assert back == plan and back.recommended_users == 7
    assert StressPlan.from_dict(json.loads(json.dumps(two_phase().to_dict()))) == two_phase()
    with pytest.raises(PlanError, match="phases"):
        StressPlan.from_dict({})


def test_repr_is_readable() -> None:
    text = repr(two_phase())
    assert "StressPlan(30 s, open, 2 phases" in text
    assert "'peak': 10-30 s, 50 -> 200/s (ramp)" in text


def test_to_frame_and_chart() -> None:
    plan = StressPlan.preset("stress")
    frame = plan.to_frame(step=10)
    assert frame.columns == [
        "t",
        "phase",
        "phase_index",
        "model",
        "level",
        "websockets",
        "rate",
        "concurrency",
    ]
    assert frame["t"].is_sorted()
    # each phase contributes its start and its end, so steps draw as vertical jumps
    assert frame.filter(frame["t"] == 30.0)["level"].to_list() == [10.0, 50.0]
    ramp = two_phase().to_frame(step=5)
    assert ramp.filter(ramp["t"] == 20.0)["rate"].to_list() == [125.0]
    spec = plan.chart().to_dict()
    assert len(spec["layer"]) == 3
    with pytest.raises(PlanError, match="step must be > 0"):
        plan.to_frame(step=0)
