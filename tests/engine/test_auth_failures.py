"""Auth under failure (issue 12.4): back-off, the circuit breaker, re-signup, partial set-up."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.engine.backoff import CAP, COOL_DOWN, CircuitBreaker, backoff_delay
from taskforge_perf.errors import ConfigError, TargetError
from taskforge_perf.mix import task_endpoint

FAST = {"hash_iterations": 1000}
PDF = tfp.RequestMix([task_endpoint("generate-pdf")])


def served(metrics: dict[str, dict[tuple[str, ...], float]], route: str, status: str) -> float:
    return metrics.get("taskforge_http_requests_total", {}).get((route, status), 0.0)


# --- pure logic -----------------------------------------------------------------------------------


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    rng = random.Random(5)
    for n, (lo, hi) in enumerate([(0.25, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0)], start=1):
        draws = [backoff_delay(n, rng) for _ in range(200)]
        assert lo <= min(draws) and max(draws) <= hi and len(set(draws)) > 100  # jittered
    assert all(CAP / 2 <= backoff_delay(n, rng) <= CAP for n in (7, 10, 1000))
    assert backoff_delay(0, rng) == 0.0


def test_breaker_opens_when_most_fail_and_half_opens_after_the_cool_down() -> None:
    b = CircuitBreaker(pool_size=20)
    for ok in (True, True, False, False):
        b.record(ok, 0.0)
    assert b.state == "closed" and b.allow(0.0)  # 2 of 4: not most, and fewer than 5 samples
    b.record(False, 1.0)  # 3 of 5 failed
    assert b.state == "open" and b.opened == 1
    assert not b.allow(1.0 + COOL_DOWN - 0.01) and b.retry_in(1.0) == pytest.approx(COOL_DOWN)
    assert b.allow(1.0 + COOL_DOWN)  # half-open: one probe ...
    assert not b.allow(1.0 + COOL_DOWN)  # ... and only one
    b.record(False, 7.0)  # the probe failed: open twice as long
    assert b.state == "open" and b.retry_in(7.0) == pytest.approx(2 * COOL_DOWN) and b.opened == 2
    assert b.allow(7.0 + 2 * COOL_DOWN)
    b.record(True, 20.0)
    assert b.state == "closed" and b.allow(20.0) and len(b.window) == 0


@pytest.mark.parametrize(
    ("value", "count", "want"),
    [(None, 5, 1), (3, 5, 3), (5, 5, 5), (0.8, 5, 4), (0.5, 5, 3), (1.0, 4, 4), (0.01, 5, 1)],
)
def test_min_ready_as_count_or_fraction(value: float | None, count: int, want: int) -> None:
    assert tfp.UserPool(count=count, min_ready=value).min_ready == want


@pytest.mark.parametrize("value", [0, 6, -1, 0.0, 1.5, -0.2, True, "3", float("nan")])
def test_min_ready_is_validated(value: object) -> None:
    with pytest.raises(ConfigError, match="UserPool.min_ready"):
        tfp.UserPool(count=5, min_ready=value)  # type: ignore[arg-type]


# --- against the reference target -------------------------------------------------------------------


@pytest.mark.parametrize("model", ["closed", "open"])
async def test_failing_logins_back_off_and_open_the_breaker(model: str) -> None:
    errors = {"POST /auth/login": 1.0, "POST /auth/refresh": 1.0}
    load = {"concurrency": 10} if model == "closed" else {"rate": 200.0}
    async with tfp.ReferenceTarget(seed=21, access_ttl=1.0, error_rate=errors, **FAST) as target:
        pool = tfp.UserPool(count=5, email_prefix="storm")
        tester = tfp.LoadTester(target, pool, PDF, seed=21)
        run = await tester.run(duration=4, **load)  # type: ignore[arg-type]
        metrics = await target.ametrics()
    logins = served(metrics, "POST /auth/login", "500")
    # Per user, attempts start ~0.75 s in (3/4 of the 1 s token) and then wait >= 0.25, 0.5, 1,
    # 2 s: at most 5 in the 4 s load, 25 for the pool (without back-off: ~85-90 logins/s).
    assert 1 <= logins <= 25, logins
    auth = run.meta["auth"]
    assert auth["breaker_opened"] >= 1 and auth["renewal_failures"] == logins
    assert any("circuit breaker" in w for w in run.meta["warnings"])
    rows = run.load_events()
    failed = rows.filter(pl.col("error") == "auth")
    assert failed.height > 0 and (failed["status"] == 0).all()
    if model == "closed":  # no storm of rows either: paused virtual users send few requests
        assert run.meta["pauses"]["count"] >= failed.height
        assert rows.height < 20_000
    else:  # the open model keeps its schedule: a row per planned request (+ 401 retries)
        planned = sum(p["planned"] for p in run.meta["phases"].values())
        sent = rows.filter(pl.col("endpoint") == "POST /tasks generate-pdf").height
        assert sent == planned + run.meta["counters"]["reauths"]  # auth rows are extra


async def test_target_that_forgot_its_users_signs_them_up_again() -> None:
    async with tfp.ReferenceTarget(seed=22, **FAST) as target:
        pool = tfp.UserPool(count=3, email_prefix="loadforget")
        tester = tfp.LoadTester(target, pool, PDF, seed=22)
        task = asyncio.ensure_future(tester.run(duration=3, concurrency=3))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        metrics: dict[str, dict[tuple[str, ...], float]] = {}
        while loop.time() < deadline and not task.done():
            metrics = await target.ametrics()
            if served(metrics, "POST /tasks", "202") > 20:
                break
            await asyncio.sleep(0.01)
        assert served(metrics, "POST /tasks", "202") > 20
        async with aiohttp.ClientSession() as s:
            async with s.post(target.base_url + "/auth/remove-test-users") as r:
                assert r.status == 200 and (await r.json())["deleted"] == 3
        before = served(await target.ametrics(), "POST /tasks", "202")
        run = await task
        metrics = await target.ametrics()
    assert served(metrics, "POST /auth/signup", "201") == 6  # set-up, then once more each
    assert served(metrics, "POST /auth/login", "404") == 3
    assert served(metrics, "POST /tasks", "202") > before + 20  # the load went on
    assert run.meta["auth"]["resignups"] == 3
    load = run.load_events()
    again = load.filter((pl.col("endpoint") == "POST /auth/signup") & (pl.col("status") == 201))
    assert again.height == 3
    assert load.filter(pl.col("error") == "auth").height == 0


async def test_partial_setup_is_reported_and_min_ready_fails_fast() -> None:
    async with tfp.ReferenceTarget(seed=23, **FAST) as target:
        first = tfp.UserPool(count=5, email_prefix="part", password="right-password")
        await tfp.LoadTester(target, first, PDF, seed=23).run(duration=0.2, concurrency=1)
        users = [("part1@example.com", "right-password")] + [
            (f"part{i}@example.com", "wrong-password") for i in range(2, 6)
        ]
        run = await tfp.LoadTester(target, tfp.UserPool(users=users), PDF, seed=23).run(
            duration=0.3, concurrency=2
        )
        assert run.meta["users"]["ready"] == 1
        assert any("only 1 of 5 users" in w for w in run.meta["warnings"]), run.meta["warnings"]
        assert run.load_events().filter(pl.col("status") == 202).height > 0

        strict = tfp.LoadTester(target, tfp.UserPool(users=users, min_ready=0.4), PDF, seed=23)
        t0 = time.monotonic()
        with pytest.raises(TargetError, match=r"only 1 of 5 users.*min_ready=2"):
            await strict.run(duration=60, concurrency=2)
        assert time.monotonic() - t0 < 30  # failed at set-up, long before the 60 s load
