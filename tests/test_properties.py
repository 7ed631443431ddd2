"""Property-based tests (hypothesis) of the pure core: threshold text, plan schedules, mix shares."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import taskforge_perf as tfp
from taskforge_perf.mix import Endpoint
from taskforge_perf.thresholds import METRICS, OPS, Threshold

PROFILE = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

# -- thresholds ----------------------------------------------------------------------------------
names = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
awkward = st.text(alphabet=st.sampled_from(list("ab ()=,\"\\'<>%.-/")), min_size=1, max_size=12).filter(
    lambda s: s.strip() != ""
)


@st.composite
def thresholds(draw: st.DrawFn) -> Threshold:
    metric = draw(st.sampled_from(METRICS))
    if metric == "error_rate":
        value = draw(st.floats(0, 1))
    else:
        value = draw(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
    run_wide = metric.startswith("generator.")  # the generator's health has no endpoint or phase
    endpoint = None if metric.startswith("ws.") or run_wide else draw(st.none() | names | awkward)
    phase = None if run_wide else draw(st.none() | names | awkward)
    return Threshold(metric, draw(st.sampled_from(OPS)), value, endpoint=endpoint, phase=phase)


@PROFILE
@given(thresholds())
def test_threshold_str_parse_round_trip(th: Threshold) -> None:
    back = Threshold.parse(str(th))
    assert back == th, (str(th), back)
    assert str(back) == str(th)


# -- plans ---------------------------------------------------------------------------------------
@st.composite
def plans(draw: st.DrawFn) -> tfp.StressPlan:
    phases: list[tfp.Phase] = []
    for i in range(draw(st.integers(1, 5))):
        duration = draw(st.floats(0.05, 20))
        model = draw(st.sampled_from(["open", "closed"]))
        prev = phases[-1].model if phases else None
        ramp = draw(st.booleans())
        ramp_from = None
        if ramp and prev is not None and prev != model:
            ramp_from = draw(st.floats(0, 50)) if model == "open" else float(draw(st.integers(0, 20)))
        if model == "open":
            kw = {"rate": draw(st.floats(0, 200) | st.sampled_from([0.0, 0.3, 1.0]))}
        else:
            kw = {"concurrency": draw(st.integers(0, 50))}
        phases.append(tfp.Phase(f"p{i}", duration, ramp=ramp, ramp_from=ramp_from, **kw))
    return tfp.StressPlan(phases)


@PROFILE
@given(plans(), st.data())
def test_schedule_matches_the_integral_of_the_rate(plan: tfp.StressPlan, data: st.DataObject) -> None:
    arrivals = list(plan.arrival_times())
    total = plan.rate_integral(0, plan.duration)
    assert abs(len(arrivals) - total) <= 1, (len(arrivals), total)
    assert arrivals == sorted(arrivals) and all(0 <= t < plan.duration for t in arrivals)
    counts = [plan.expected_requests(i) or 0 for i in range(len(plan))]
    assert sum(counts) == len(arrivals)
    # Any window [t0, t1): arrivals in it match the planned count within one.
    t0 = data.draw(st.floats(0, plan.duration))
    t1 = data.draw(st.floats(t0, plan.duration))
    inside = sum(1 for t in arrivals if t0 <= t < t1)
    assert abs(inside - plan.rate_integral(t0, t1)) <= 1 + 1e-9, (t0, t1, inside)
    assert plan.arrivals(t0, t1) == [t for t in arrivals if t0 <= t < t1]


@PROFILE
@given(plans(), st.data())
def test_phases_are_contiguous_and_at_matches_them(plan: tfp.StressPlan, data: st.DataObject) -> None:
    starts = plan.boundaries
    assert starts[0] == 0
    for i in range(1, len(plan)):
        assert math.isclose(starts[i], starts[i - 1] + plan.phases[i - 1].duration, abs_tol=1e-9)
    assert math.isclose(plan.duration, sum(p.duration for p in plan.phases), abs_tol=1e-9)
    t = data.draw(st.floats(0, plan.duration, exclude_max=True))
    lvl = plan.at(t)
    assert lvl is not None
    i = lvl.phase_index
    assert starts[i] <= t and (i + 1 == len(plan) or t < starts[i + 1])
    ph = plan.phases[i]
    assert lvl.phase is ph and lvl.model == ph.model
    assert math.isclose(lvl.elapsed_in_phase + lvl.remaining_in_phase, ph.duration, abs_tol=1e-9)
    if ph.model == "open" and not ph.ramp:
        assert lvl.rate == ph.rate
    if ph.model == "closed" and not ph.ramp:
        assert lvl.concurrency == ph.concurrency
    if ph.model == "open" and ph.ramp:  # the rate is the slope of the planned count
        h = 1e-4
        assume(lvl.elapsed_in_phase > h and lvl.remaining_in_phase > h)
        slope = plan.rate_integral(t - h, t + h) / (2 * h)
        assert math.isclose(slope, lvl.rate or 0.0, rel_tol=1e-4, abs_tol=1e-3)
    assert plan.at(plan.duration) is None
    assert tfp.StressPlan.from_dict(plan.to_dict()) == plan


# -- mixes ---------------------------------------------------------------------------------------
class _Grid:
    """A stand-in for random.Random whose draws cover [0, 1) evenly: pick() then hits each
    endpoint exactly in proportion to its share (up to one draw per boundary)."""

    def __init__(self, n: int) -> None:
        self.n, self.k = n, 0

    def random(self) -> float:
        u = (self.k + 0.5) / self.n
        self.k += 1
        return u


@PROFILE
@given(st.lists(st.floats(0, 1e6) | st.integers(0, 1000), min_size=1, max_size=8))
def test_mix_weights_become_shares(weights: list[float]) -> None:
    total = sum(weights)
    assume(total > 0 and all(w == 0 or w / total > 1e-9 for w in weights))
    mix = tfp.RequestMix([Endpoint(f"GET /e{i}", "GET", f"/e{i}", weight=w) for i, w in enumerate(weights)])
    shares = mix.shares()
    assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-9)
    for i, w in enumerate(weights):
        assert math.isclose(shares[f"GET /e{i}"], w / total, rel_tol=1e-9, abs_tol=1e-15)
    n = 10_000
    grid = _Grid(n)
    counts = dict.fromkeys(shares, 0)
    for _ in range(n):
        counts[mix.pick(grid).name] += 1  # type: ignore[arg-type]
    for name, share in shares.items():
        assert abs(counts[name] - share * n) <= 1 + 1e-6, (name, counts[name], share * n)
        if share == 0:
            assert counts[name] == 0
