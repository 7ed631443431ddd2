"""Regions: a group's traffic behind an added RTT (issue 18 item 3)."""

from __future__ import annotations

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.mix import Endpoint, RequestMix

HEALTH = RequestMix([Endpoint("GET /health", "GET", "/health", auth=False)])
NETEM = tfp.Region.netem_available()


async def _quartiles(mode: str, rtt: float) -> dict[str, float]:
    """Lower quartile of latency per group. The added RTT is a constant shift of the
    distribution; a busy machine's late wake-ups only add to it, on both paths, so the shift of
    the lower quartile measures the region's RTT with the least of that noise."""
    groups = [
        tfp.UserGroup(name="local", users=1, mix=HEALTH),
        tfp.UserGroup(name="near", users=1, mix=HEALTH, region=tfp.Region(name="near", rtt=0.0, mode=mode)),
        tfp.UserGroup(name="far", users=1, mix=HEALTH, region=tfp.Region(name="far", rtt=rtt, mode=mode)),
    ]
    async with tfp.ReferenceTarget(seed=1, hash_iterations=1000) as target:
        run = await tfp.LoadTester(target, groups=groups, seed=1, live=False).run(duration=2, rate=150)
    assert [g["region_mode"] for g in run.meta["groups"]] == [None, mode, mode]
    ev = run.load_events()
    assert ev["error"].null_count() == ev.height
    lat = ((pl.col("t_end") - pl.col("t_start")) / 1e6).quantile(0.25, "linear")
    return dict(ev.group_by(pl.col("group").cast(pl.String)).agg(lat).iter_rows())  # type: ignore[arg-type]


@pytest.mark.timeout(60)
async def test_relay_region_adds_its_rtt_to_the_rows_within_1ms() -> None:
    med = await _quartiles("relay", 0.030)
    # the region's RTT is what "far" adds over the same path with no RTT ("near")
    assert abs(med["far"] - med["near"] - 30.0) < 1.0, med
    assert med["near"] - med["local"] < 5.0, med  # the relay's own hop is small


@pytest.mark.skipif(NETEM is not None, reason=f"netem regions cannot be built here: {NETEM}")
@pytest.mark.timeout(60)
async def test_netem_region_adds_its_rtt_to_the_rows_within_1ms() -> None:
    med = await _quartiles("netem", 0.030)
    assert abs(med["far"] - med["near"] - 30.0) < 1.0, med


async def test_netem_mode_says_why_it_cannot_run() -> None:
    if NETEM is None:
        pytest.skip("netem works here")
    region = tfp.Region(name="eu", rtt=0.05, mode="netem")
    with pytest.raises(tfp.RunError, match="netem|namespace|root|Linux"):
        await region.open("http://127.0.0.1:9")


def test_region_config_errors() -> None:
    with pytest.raises(tfp.ConfigError, match="rtt"):
        tfp.Region(rtt=-1)
    with pytest.raises(tfp.ConfigError, match="loss"):
        tfp.Region(loss=0.01, mode="relay")
    with pytest.raises(tfp.ConfigError, match="bandwidth"):
        tfp.Region(bandwidth=0)
    assert repr(tfp.Region(name="eu", rtt=0.08, jitter=0.004)) == "Region(name='eu', rtt=80ms, jitter=4ms)"
