"""Acceptance, continued: the status gateway, the workers' message shapes and the pipeline of the
real system (DESIGN.md section 4, issue 17), on the reference target."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from target_helpers import (
    IMAGE,
    PASSWORD,
    bearer,
    call,
    email,
    final,
    next_second,
    refresh,
    rejected_1005,
    signup,
    sub,
    task,
    watched,
)
from websockets.asyncio.client import connect

from taskforge_perf.target import ReferenceTarget

# --- WebSocket -------------------------------------------------------------------------------------


async def test_bad_token_closed_at_once_replaced_token_after_the_session_check() -> None:
    """A missing or bad token is refused by the synchronous jwt check (the real 0.2-1.5 ms), never
    after the async session check; an access token that a refresh replaced is refused by that check."""
    async with ReferenceTarget(real_quirks=True, token_check_delay=0.6, hash_iterations=1000, seed=19) as t:
        for query in ("", "?token=", "?token=garbage"):
            assert await rejected_1005(f"{t.ws_url}/{query}") < 0.3, query
        async with aiohttp.ClientSession() as s:
            old = await signup(s, t.base_url)
            await next_second()  # integer iat: a refresh in the same second gives the same token
            status, new = await refresh(s, t.base_url, old["refreshToken"])
            assert status == 200 and new["accessToken"] != old["accessToken"]
        assert await rejected_1005(f"{t.ws_url}/?token={old['accessToken']}") >= 0.55
        async with connect(f"{t.ws_url}/?token={new['accessToken']}") as ws:
            await asyncio.sleep(0.7)
            assert ws.state.name == "OPEN"


async def test_a_login_replaces_the_socket_token(real: ReferenceTarget) -> None:
    async with aiohttp.ClientSession() as s:
        addr = email()
        first = await signup(s, real.base_url, addr)
        await next_second()
        status, _ = await call(
            s, "POST", real.base_url + "/auth/login", json={"email": addr, "password": PASSWORD}
        )
        assert status == 200
    await rejected_1005(f"{real.ws_url}/?token={first['accessToken']}")


async def test_cache_cleared_for_finished_pdf_kept_for_video_and_image(real: ReferenceTarget) -> None:
    async with aiohttp.ClientSession() as s:
        token = (await signup(s, real.base_url))["accessToken"]
        pdf, _ = await watched(real, s, token, "generate-pdf", {"url": "https://example.com"})
        video, vmsgs = await watched(real, s, token, "compress-video", {"videoUrl": "v.mov"})
        image, imsgs = await watched(real, s, token, "resize-image", {**IMAGE, "imageUrl": "dog.jpg"})
    async with connect(f"{real.ws_url}/?token={token}") as ws:
        await asyncio.sleep(0.1)
        # The gateway answers subscribes in order: had the pdf an entry, it would come first.
        for task_id in (pdf, video, image):
            await ws.send(sub(task_id))
        got = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
    assert got == [vmsgs[-1], imsgs[-1]]
    assert all("status" not in m for m in got)


async def test_message_shapes_of_each_worker(any_target: ReferenceTarget) -> None:
    t = any_target
    async with aiohttp.ClientSession() as s:
        token = (await signup(s, t.base_url))["accessToken"]
        pdf, msgs = await watched(t, s, token, "generate-pdf", {"url": "https://example.com"})
        assert [m["status"] for m in msgs] == ["processing", "completed"]
        assert msgs[-1]["progress"] == 100 and msgs[-1]["fileUrl"].endswith(".pdf")
        video, msgs = await watched(t, s, token, "compress-video", {"videoUrl": "v.mov"})
        assert [(m.get("status"), m["progress"]) for m in msgs] == [
            ("processing", 10),
            ("processing", 30),
            ("processing", 80),
            (None, 100),
        ]
        assert msgs[-1] == {"taskId": video, "progress": 100, "success": True, "url": msgs[-1]["url"]}
        payload = {**IMAGE, "imageUrl": f"https://example.com/{time.monotonic_ns()}.jpg"}
        image, msgs = await watched(t, s, token, "resize-image", payload)
        assert msgs == [{"taskId": image, "success": True, "url": msgs[0]["url"]}]
        again, msgs = await watched(t, s, token, "resize-image", payload)  # already stored
        assert msgs == [{"taskId": again, "url": msgs[0]["url"], "cached": True}]


# --- pipeline --------------------------------------------------------------------------------------


async def metrics_until(t: ReferenceTarget, cond: Any, within: float = 20.0) -> dict[str, Any]:
    """Poll /metrics (one consistent snapshot each time) until ``cond(snapshot)``."""
    deadline = time.monotonic() + within
    while True:
        m = await t.ametrics()
        if cond(m):
            return m
        assert time.monotonic() < deadline, "condition never met"
        await asyncio.sleep(0.02)


def passes(m: dict[str, Any]) -> int:
    return int(m["taskforge_outbox_passes_total"][()])


async def test_outbox_first_pass_after_60s_scaled_20_rows_per_type_3_types() -> None:
    async with ReferenceTarget(
        real_quirks=True, outbox_time_scale=0.05, task_durations="*=30s", hash_iterations=1000, seed=20
    ) as t:
        first = await t.ametrics()
        assert passes(first) == 0 and first["taskforge_outbox_interval_seconds"][()] == pytest.approx(3.0)
        async with aiohttp.ClientSession() as s:
            token = (await signup(s, t.base_url))["accessToken"]
            for ttype, n in (("generate-pdf", 25), ("etl-data", 3)):
                await asyncio.gather(*(task(s, t.base_url, token, ttype, {"url": "u"}) for _ in range(n)))
        m = await metrics_until(t, lambda m: passes(m) >= 1)
        assert m["taskforge_uptime_seconds"][()] >= 3.0  # the first pass waited 60 s x 0.05
        assert m["taskforge_tasks_dispatched_total"][("generate-pdf",)] == min(25, 20 * passes(m))
        assert ("etl-data",) not in m.get("taskforge_tasks_dispatched_total", {})
        m = await metrics_until(t, lambda m: passes(m) >= 3)
        assert m["taskforge_tasks_dispatched_total"][("generate-pdf",)] == 25
        assert m["taskforge_tasks_queued"][("etl-data",)] == 3  # accepted, never dispatched
        assert m["taskforge_outbox_interval_seconds"][()] == pytest.approx(0.25)  # 5 s x 0.05


async def test_outbox_slows_to_10s_then_15s_as_the_backlog_passes_50_then_100() -> None:
    async with ReferenceTarget(
        real_quirks=True,
        outbox_time_scale=0.05,
        outbox_first_delay=0,
        task_durations="generate-pdf=30s",
        hash_iterations=1000,
        seed=21,
    ) as t:
        async with aiohttp.ClientSession() as s:
            token = (await signup(s, t.base_url))["accessToken"]
            for _ in range(13):
                await asyncio.gather(
                    *(task(s, t.base_url, token, "generate-pdf", {"url": "u"}) for _ in range(10))
                )
        seen: list[tuple[int, float]] = []

        def record(m: dict[str, Any]) -> bool:
            dispatched = int(m.get("taskforge_tasks_dispatched_total", {}).get(("generate-pdf",), 0))
            interval = m["taskforge_outbox_interval_seconds"][()]
            if passes(m) >= 1:
                seen.append((dispatched, interval))
            return dispatched == 130 and interval > 0.7

        await metrics_until(t, record)
    # One consumer (prefetch 1) holds one task, the queue keeps the rest: backlog = dispatched - 1
    # (or all of it, before the consumer took its first), against 50 and 100 per consumer.
    for dispatched, interval in seen:
        if dispatched not in (51, 101):
            want = 0.75 if dispatched > 101 else 0.5 if dispatched > 51 else 0.25
            assert interval == pytest.approx(want), (dispatched, seen)
    assert {0.25, 0.5, 0.75} <= {round(v, 3) for _, v in seen}


async def test_one_consumer_per_queue_runs_tasks_one_at_a_time(real: ReferenceTarget) -> None:
    async with aiohttp.ClientSession() as s:
        token = (await signup(s, real.base_url))["accessToken"]
        async with connect(f"{real.ws_url}/?token={token}") as ws:
            await asyncio.sleep(0.1)
            ids = [await task(s, real.base_url, token, "generate-pdf", {"url": "u"}) for _ in range(3)]
            for task_id in ids:
                await ws.send(sub(task_id))
            done: set[str] = set()
            order: list[tuple[str, str]] = []
            async with asyncio.timeout(10):
                while len(done) < 3:
                    m = json.loads(await ws.recv())
                    order.append((m["taskId"], m["status"]))
                    if final(m):
                        done.add(m["taskId"])
    # Each task starts only after the previous one completed.
    started = [tid for tid, st in order if st == "processing"]
    for a, b in zip(started, started[1:], strict=False):
        assert order.index((a, "completed")) < order.index((b, "processing")), order


# --- real_timing -----------------------------------------------------------------------------------


async def test_real_timing_costs_bcrypt_on_auth_and_serialises_requests() -> None:
    """Lower bounds only (a loaded machine can only be slower): figures in benchmarks/RESULTS.md."""
    async with ReferenceTarget(real_timing=True, hash_iterations=1000, seed=22) as t:
        assert t.config.real_quirks
        async with aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            token = (await signup(s, t.base_url))["accessToken"]
            assert time.monotonic() - t0 >= 0.12
            t0 = time.monotonic()
            answers = await asyncio.gather(*(call(s, "GET", t.base_url + "/health/live") for _ in range(100)))
            assert {a[0] for a in answers} == {200}
            assert time.monotonic() - t0 >= 100 * 0.002  # one 2 ms service slot at a time
            assert (await call(s, "POST", t.base_url + "/tasks", headers=bearer(token), json={}))[0] == 400
