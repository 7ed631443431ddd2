"""Each fault / capacity / profile knob does what it says (measured with the monotonic clock)."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import pytest
from target_helpers import PASSWORD, call, collect, create_task, email, final, signup
from websockets.asyncio.client import connect

from taskforge_perf.target import ReferenceTarget


async def _timed(s: aiohttp.ClientSession, url: str) -> tuple[float, float, int]:
    t0 = time.monotonic()
    async with s.get(url) as r:
        await r.read()
        return t0, time.monotonic(), r.status


async def test_stall_freezes_every_response() -> None:
    async with ReferenceTarget(stalls="1:1.5", hash_iterations=1000) as t:
        ready = time.monotonic()
        async with aiohttp.ClientSession() as s:
            rows = []
            while time.monotonic() - ready < 3.2 and len(rows) < 1000:
                rows.append(await _timed(s, t.base_url + "/health"))
                await asyncio.sleep(0.005)  # pacing only: ~150 requests over 3.2 s
    assert all(st == 200 for *_, st in rows)
    slow = [(a, b) for a, b, _ in rows if b - a > 0.5]
    assert len(slow) == 1  # one request caught in the window, sequential client
    a, b = slow[0]
    assert 0.5 <= a - ready <= 1.3 and 1.1 <= b - ready <= 2.8
    assert b - a >= 0.2 + (2.5 - 1.3) - 0.2  # held until the window's end
    assert sum(1 for a, b, _ in rows if a - ready > 2.7) > 10  # fast again afterwards


async def test_error_rate_half_and_seeded() -> None:
    patterns = []
    for _ in range(2):
        async with ReferenceTarget(error_rate="POST /tasks=0.5", seed=7, hash_iterations=1000) as t:
            async with aiohttp.ClientSession() as s:
                token = (await signup(s, t.base_url))["accessToken"]
                statuses = [(await create_task(s, t.base_url, token))[0] for _ in range(400)]
                health = [(await call(s, "GET", t.base_url + "/health"))[0] for _ in range(50)]
        assert set(statuses) == {202, 500} and set(health) == {200}
        n500 = statuses.count(500)
        assert 160 <= n500 <= 240  # binomial(400, 0.5): mean 200, sd 10, +-4 sd
        patterns.append(statuses)
    assert patterns[0] == patterns[1]  # same seed, same outcomes


# A mean of 100 client-timed requests within 2 ms-sd bounds: beside another worker's load (xdist)
# it measured 34.9 ms against < 32 once, the machine's delay on top of the target's.
@pytest.mark.exclusive
async def test_latency_knob_fixed_and_exponential() -> None:
    spec = "GET /health=30ms,POST /tasks=exp:20ms"
    async with ReferenceTarget(latency=spec, seed=3, hash_iterations=1000) as t:
        async with aiohttp.ClientSession() as s:
            lat = [b - a for a, b, _ in [await _timed(s, t.base_url + "/health") for _ in range(20)]]
            assert min(lat) >= 0.029
            token = (await signup(s, t.base_url))["accessToken"]
            samples = []
            for _ in range(100):
                t0 = time.monotonic()
                await create_task(s, t.base_url, token)
                samples.append(time.monotonic() - t0)
            m = (await call(s, "GET", t.base_url + "/metrics"))[1]
    mean = statistics.fmean(samples)
    assert 0.014 < mean < 0.032  # exp(20 ms): sd of the mean of 100 is 2 ms
    assert statistics.pstdev(samples) > 0.008  # a distribution, not a constant
    assert 'route="GET /health",le="0.025"} 0' in m  # the target itself saw the 30 ms


async def test_candidate_profile_slows_post_tasks() -> None:
    medians = {}
    for profile in ("baseline", "candidate"):
        async with ReferenceTarget(profile=profile, hash_iterations=1000) as t:
            async with aiohttp.ClientSession() as s:
                token = (await signup(s, t.base_url))["accessToken"]
                samples = []
                for _ in range(60):
                    t0 = time.monotonic()
                    await create_task(s, t.base_url, token)
                    samples.append(time.monotonic() - t0)
        medians[profile] = statistics.median(samples)
    assert medians["candidate"] - medians["baseline"] >= 0.004  # +6 ms by default


async def test_connection_drops_surface_as_client_errors() -> None:
    async with ReferenceTarget(drop_rate=0.5, seed=11, hash_iterations=1000) as t:
        errors = ok = 0
        async with aiohttp.ClientSession() as s:
            for _ in range(100):  # POST: aiohttp never retries it, so every abort surfaces
                try:
                    async with s.post(t.base_url + "/tasks", json={"type": "etl-data"}) as r:
                        await r.read()
                        ok += r.status == 401
                except aiohttp.ClientError:
                    errors += 1
        m = await t.ametrics()
    assert errors + ok == 100 and 30 <= errors <= 70
    assert m["taskforge_http_requests_total"][("POST /tasks", "aborted")] == errors


async def test_capacity_limit_queues_requests() -> None:
    async with ReferenceTarget(max_concurrency=2, service_time=0.02) as t:  # ~100 req/s
        async with aiohttp.ClientSession() as s:
            await call(s, "GET", t.base_url + "/health")
            t0 = time.monotonic()
            res = await asyncio.gather(*(_timed(s, t.base_url + "/health") for _ in range(40)))
            elapsed = time.monotonic() - t0
    assert all(st == 200 for *_, st in res)
    assert 0.38 <= elapsed < 2.0
    assert max(b - a for a, b, _ in res) >= 0.3  # the last ones queued


async def test_password_hash_cost() -> None:
    costs = {}
    for n in (1000, 400_000):
        async with ReferenceTarget(hash_iterations=n) as t:
            async with aiohttp.ClientSession() as s:
                t0 = time.monotonic()
                addr = email()
                await signup(s, t.base_url, addr)
                status, _ = await call(
                    s,
                    "POST",
                    t.base_url + "/auth/login",
                    json={"email": addr, "password": PASSWORD},
                )
                assert status == 200
                costs[n] = time.monotonic() - t0
    assert costs[400_000] > 5 * costs[1000] and costs[400_000] > 0.05


async def test_workers_queue_and_fail() -> None:
    async with ReferenceTarget(
        worker_concurrency=1,
        task_durations="etl-data=200ms",
        task_failure_rate=1.0,
        hash_iterations=1000,
    ) as t:
        async with aiohttp.ClientSession() as s:
            token = (await signup(s, t.base_url))["accessToken"]
            async with connect(f"{t.ws_url}/?token={token}") as ws:
                t0 = time.monotonic()
                ids = [(await create_task(s, t.base_url, token, "etl-data"))[1]["taskId"] for _ in range(4)]
                for task_id in ids:
                    await ws.send(f'{{"type":"subscribe","taskId":"{task_id}"}}')
                seen: dict[str, float] = {}
                msgs = await collect(ws, lambda m: _record(seen, m, t0) == 4, within=5)
    assert all(m["status"] == "failed" for m in msgs if final(m))
    finish = sorted(seen.values())
    assert finish[-1] >= 0.75  # 4 x 200 ms through one worker: queueing delay
    assert finish[0] < 0.5


def _record(seen: dict[str, float], m: dict[str, object], t0: float) -> int:
    if final(m):
        seen[str(m["taskId"])] = time.monotonic() - t0
    return len(seen)


@pytest.mark.parametrize(
    ("knobs", "field"),
    [
        ({"port": 70000}, "port"),
        ({"error_rate": "POST /tasks=1.5"}, "error_rate"),
        ({"latency": "POST /tasks=20"}, "latency"),
        ({"latency": "GET /nope=20ms"}, "latency"),
        ({"stalls": "2"}, "stalls"),
        ({"task_durations": "bake-cake=1s"}, "task_durations"),
        ({"profile": "fast"}, "profile"),
        ({"access_ttl": 0}, "access_ttl"),
        ({"max_concurrency": 4}, "service_time"),
    ],
)
def test_bad_config_names_the_field(knobs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        ReferenceTarget(**knobs)
