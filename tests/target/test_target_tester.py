"""The tester against the real-faithful target (issue 17 items 2 and 3): every real message shape
completes its task, socket rejections at the real timings are recognised and recovered from, and
``UserPool(cleanup=...)`` ends a run as asked."""

from __future__ import annotations

import json
import time
import urllib.request

import polars as pl
import pytest
from target_helpers import PASSWORD

import taskforge_perf as tfp
from taskforge_perf.errors import ConfigError
from taskforge_perf.mix import Endpoint, task_endpoint
from taskforge_perf.plan import Phase, StressPlan

FAST = {"hash_iterations": 1000}
ONE_IMAGE = {"imageUrl": "https://example.com/images/same.jpg", "width": 640, "height": 480}


def kind(ws: pl.DataFrame, k: str) -> pl.DataFrame:
    return ws.filter(pl.col("kind").cast(pl.String) == k)


def same_image(user: str, token: str | None, rng: object) -> dict[str, object]:
    return {"type": "resize-image", "payload": ONE_IMAGE}


def plan(load_s: float, settle_s: float) -> StressPlan:
    return StressPlan(
        [Phase("load", load_s, concurrency=1, think_time=0.1), Phase("settle", settle_s, concurrency=0)]
    )


async def test_video_success_and_cached_image_complete_their_tasks() -> None:
    """``{progress: 100, success: true, url}`` and ``{url, cached: true}`` are completions: without
    the cached shape every image after the first would stay unfinished (``unknown_shape``)."""
    mix = tfp.RequestMix(
        [
            task_endpoint("compress-video"),
            Endpoint(
                "POST /tasks resize-image",
                "POST",
                "/tasks",
                build=same_image,
                creates_task=True,
                task_type="resize-image",
                headers={"Content-Type": "application/json"},
            ),
        ]
    )
    async with tfp.ReferenceTarget(
        real_quirks=True, outbox_time_scale=0.01, task_durations="*=40ms", seed=41, **FAST
    ) as target:
        tester = tfp.LoadTester(
            target, tfp.UserPool(count=2, email_prefix="shapes"), mix, websockets=2, seed=41, live=False
        )
        run = await tester.run(plan(1.5, 0.5), wait_for_tasks=15)
    ws = run.ws_events
    created = run.load_events().filter(pl.col("task_id").is_not_null())
    images = created.filter(pl.col("endpoint").cast(pl.String) == "POST /tasks resize-image")
    assert images.height >= 3 and created.height > images.height  # cached images and videos
    done = kind(ws, "message").filter(pl.col("status").cast(pl.String) == "completed")
    assert set(created["task_id"]) <= set(done["task_id"])
    assert run.ws_summary()["unknown_shape"].item() == 0
    assert run.task_latency()["unfinished_at_end"].sum() == 0


def _login_elsewhere(base_url: str, email: str) -> None:
    """Replace a user's tokens from outside the tester (integer iat: wait for the next second)."""
    time.sleep(1.0 - time.time() % 1.0 + 0.01)
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    req = urllib.request.Request(
        base_url + "/auth/login", body, {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


async def test_rejections_at_real_timings_are_recognised_and_recovered() -> None:
    """Real gateway timings (2 ms session check): a forged token is closed at once, a token a
    login replaced after the check; both are ``rejected`` (1005) and the users renew and connect."""
    pool = tfp.UserPool(count=3, email_prefix="rejectreal", password=PASSWORD)
    async with tfp.ReferenceTarget(real_quirks=True, outbox_time_scale=0.01, seed=42, **FAST) as target:
        assert target.config.token_check_delay == 0.002

        def tamper(done: int, total: int) -> None:
            if done == total:
                pool[0].access = "forged.token.value"
                _login_elsewhere(target.base_url, pool[1].email)

        tester = tfp.LoadTester(
            target,
            pool,
            tfp.RequestMix([task_endpoint("resize-image")]),
            websockets=3,
            seed=42,
            setup_progress=tamper,
            ws_options=tfp.WsOptions(backoff_initial=0.05),
            live=False,
        )
        run = await tester.run(plan(2.0, 0.5), wait_for_tasks=10)
    ws = run.ws_events
    rejected = kind(ws, "connect_error").filter(pl.col("error").cast(pl.String) == "rejected")
    assert set(rejected["user"].cast(pl.String)) == {pool[0].email, pool[1].email}
    assert set(rejected["code"]) == {1005}
    connected = kind(ws, "connect")
    assert set(connected["user"].cast(pl.String)) == {u.email for u in pool}
    assert run.task_latency()["unfinished_at_end"].sum() == 0


def _login_status(base_url: str, email: str) -> int:
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    req = urllib.request.Request(
        base_url + "/auth/login", body, {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@pytest.mark.parametrize("cleanup", ["remove-test-users", None, "logout"])
async def test_user_pool_cleanup(cleanup: str | None) -> None:
    async with tfp.ReferenceTarget(real_quirks=True, seed=43, **FAST) as target:
        pool = tfp.UserPool(count=2, email_prefix=f"load{cleanup}", password=PASSWORD, cleanup=cleanup)
        tester = tfp.LoadTester(target, pool, seed=43, live=False)
        run = await tester.run(duration=0.5, rate=10)
        left = {_login_status(target.base_url, u.email) for u in pool}
    endpoints = run.events["endpoint"].cast(pl.String)
    removes = run.events.filter(endpoints == "POST /auth/remove-test-users")
    logouts = run.events.filter(endpoints == "POST /auth/logout")
    assert run.meta["auth"]["cleanup"] == cleanup and run.meta["auth"]["cleanup_failures"] == 0
    if cleanup == "remove-test-users":
        assert removes.height == 1 and removes["status"].to_list() == [200] and logouts.height == 0
        assert left == {404}  # every user whose email starts with "load" is gone
    elif cleanup is None:
        assert removes.height == 0 and logouts.height == 0 and left == {200}
    else:
        assert removes.height == 0 and logouts.height == 2 and left == {200}
        assert run.meta["auth"]["logout_failures"] == 2  # the real logout answers 401


def test_user_pool_cleanup_is_checked_and_logout_by_default() -> None:
    assert tfp.UserPool(count=1).cleanup == "logout"
    with pytest.raises(ConfigError, match="UserPool.cleanup"):
        tfp.UserPool(count=1, cleanup="drop")
