"""find_capacity: the highest rate that holds an SLO (issue 18 item 4)."""

from __future__ import annotations

import time
from typing import Any

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.capacity import _next_rate, knee_of, min_answered
from taskforge_perf.mix import Endpoint, RequestMix

HEALTH = RequestMix([Endpoint("GET /health", "GET", "/health", auth=False)])


def test_min_answered_follows_the_order_statistic_rule() -> None:
    parse = tfp.Threshold.parse
    assert min_answered([parse("p95 < 300ms")]) == 400
    assert min_answered([parse("p99 < 1s"), parse("p50 < 10ms")]) == 2000
    assert min_answered([parse("error_rate < 1%")]) == 0


def test_search_doubles_then_bisects() -> None:
    assert _next_rate(50, None, 2, 5000, 50, 0.05) == 100
    assert _next_rate(400, 800, 2, 5000, 50, 0.05) == 600
    assert "converged" in str(_next_rate(400, 410, 2, 5000, 50, 0.05))
    assert "max" in str(_next_rate(5000, None, 2, 5000, 50, 0.05))
    assert _next_rate(None, 50, 2, 5000, 50, 0.05) == 25  # even the start broke: go down


def test_knee_is_where_the_curve_bends() -> None:
    assert knee_of([100, 200, 300, 400, 500], [10, 11, 12, 40, 200]) == 400  # last point before it shoots up
    assert knee_of([100, 200], [10, 20]) is None


@pytest.mark.timeout(150)
async def test_find_capacity_lands_within_10pct_of_a_known_capacity() -> None:
    # 50 slots x 0.25 s each: 200 requests/s, latency 250 ms below it and a growing queue above
    async with tfp.ReferenceTarget(
        seed=1, hash_iterations=1000, max_concurrency=50, service_time=0.25
    ) as target:
        tester = tfp.LoadTester(target, tfp.UserPool(count=2), HEALTH, seed=1, live=False)
        began = time.monotonic()
        result = await tfp.find_capacity(tester, ["p95 < 400ms", "error_rate < 1%"], start=100, max=2000)
        wall = time.monotonic() - began
    assert result.rate is not None and abs(result.rate - 200) <= 20, result
    lo, hi = result.interval
    assert lo == result.rate and hi is not None and hi > lo
    assert wall < 120, wall
    steps = result.steps
    assert (steps.filter(pl.col("passed"))["answered"] >= 400).all()
    assert steps.filter(~pl.col("passed"))["reason"].null_count() == 0
    assert "holds" in repr(result) and result.chart() is not None
    assert tester.drain_grace is None  # restored after the search


class SaturatedTester(tfp.LoadTester):
    """A tester whose every run reports a saturated generator (cause "tester"), as engine.health
    flags it when the tester's own loop is past its limits: reproducing a real saturation needs
    seconds of a pegged CPU, so the flag is set on a real (tiny) run instead."""

    async def run(self, *args: Any, **kw: Any) -> tfp.Run:
        run = await super().run(*args, **kw)
        run.meta["generator"] = {"saturated": True, "causes": ["tester"], "reasons": ["tester: lag"]}
        return run


@pytest.mark.timeout(60)
async def test_a_saturated_generator_is_reported_not_taken_for_a_capacity() -> None:
    async with tfp.ReferenceTarget(seed=1, hash_iterations=1000) as target:
        tester = SaturatedTester(target, tfp.UserPool(count=1), HEALTH, seed=1, live=False)
        result = await tfp.find_capacity(tester, "p95 < 300ms", start=200, min_step_s=0.5)
    assert result.rate is None and result.generator_limited and result.generator_limit == 200
    assert result.steps.height == 1  # stopped at once
    assert "generator limit" in repr(result)


def test_find_capacity_config_errors() -> None:
    tester = tfp.LoadTester(tfp.Target("http://127.0.0.1:9"))
    with pytest.raises(tfp.ConfigError, match="start"):
        import asyncio

        asyncio.run(tfp.find_capacity(tester, start=-1))
    with pytest.raises(tfp.ConfigError, match="slo"):
        import asyncio

        asyncio.run(tfp.find_capacity(tester, slo=[]))


@pytest.mark.timeout(60)
def test_cli_capacity_prints_the_result_and_exits_0(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from taskforge_perf.cli import main

    with tfp.ReferenceTarget(seed=1, hash_iterations=1000) as target:
        out = tmp_path / "cap.json"
        code = main(
            [
                "capacity",
                "--base-url",
                target.base_url,
                "--slo",
                "p95 < 500ms",
                "--start",
                "100",
                "--max",
                "100",
                "--users",
                "2",
                "--json",
                str(out),
            ]
        )
    assert code == 0
    assert "rate=100/s holds [p95 < 500ms]" in capsys.readouterr().out
    assert json.loads(out.read_text())["rate"] == 100


@pytest.mark.timeout(60)
async def test_a_slight_overload_fails_on_throughput_even_when_latency_holds() -> None:
    # 10% above a 200/s capacity: over a short step the queue adds well under 2 s of latency, so
    # only the steady-state throughput (~200/s of 220/s offered) shows the rate is not sustainable
    async with tfp.ReferenceTarget(
        seed=1, hash_iterations=1000, max_concurrency=50, service_time=0.25
    ) as target:
        tester = tfp.LoadTester(target, tfp.UserPool(count=2), HEALTH, seed=1, live=False)
        result = await tfp.find_capacity(tester, "p95 < 2s", start=220, max=220, max_steps=1)
    step = result.steps.row(0, named=True)
    assert not step["passed"] and step["p95_ms"] < 2000, step
    assert "throughput" in step["reason"] and step["achieved_rps"] < 0.95 * 220, step
