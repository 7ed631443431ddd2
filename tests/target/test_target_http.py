"""The HTTP contract of DESIGN.md section 4 against the default target."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import jwt
from target_helpers import PASSWORD, bearer, call, create_task, email, signup

from taskforge_perf.target import ReferenceTarget
from taskforge_perf.target.config import TASK_TYPES


async def test_signup_201_then_409_and_400s(target: ReferenceTarget) -> None:
    base = target.base_url
    async with aiohttp.ClientSession() as s:
        addr = email()
        body = await signup(s, base, addr)
        assert body["success"] is True and body["accessToken"] and body["refreshToken"]
        claims = jwt.decode(body["accessToken"], options={"verify_signature": False})
        assert {"sub", "sid", "exp"} <= set(claims)
        assert claims["exp"] - claims["iat"] > 800  # default TTL 900 s
        status, err = await call(s, "POST", base + "/auth/signup", json={"email": addr, "password": PASSWORD})
        assert status == 409 and err["success"] is False and err["error"]["status"] == 409
        assert "stack" not in err["error"]
        for bad in ({"email": email()}, {"password": PASSWORD}, {}):
            status, err = await call(s, "POST", base + "/auth/signup", json=bad)
            assert status == 400 and err["error"]["message"]
        status, _ = await call(s, "POST", base + "/auth/signup", data=b"{not json")
        assert status == 400


async def test_login_404_401_and_revocation(target: ReferenceTarget) -> None:
    base = target.base_url
    async with aiohttp.ClientSession() as s:
        status, _ = await call(s, "POST", base + "/auth/login", json={"email": email(), "password": PASSWORD})
        assert status == 404
        addr = email()
        first = await signup(s, base, addr)
        status, second = await call(
            s, "POST", base + "/auth/login", json={"email": addr, "password": PASSWORD}
        )
        assert status == 200 and second["accessToken"] != first["accessToken"]
        # a login revokes earlier sessions
        assert (await create_task(s, base, first["accessToken"]))[0] == 401
        assert (await create_task(s, base, second["accessToken"]))[0] == 202
        # a wrong password answers 401 and revokes the user's sessions
        status, _ = await call(s, "POST", base + "/auth/login", json={"email": addr, "password": "wrong"})
        assert status == 401
        status, body = await create_task(s, base, second["accessToken"])
        assert status == 401 and body == {"message": "Session revoked"}


async def test_refresh_rotation_and_reuse_detection(target: ReferenceTarget) -> None:
    base = target.base_url
    async with aiohttp.ClientSession() as s:
        tokens = await signup(s, base)
        status, new = await call(
            s, "POST", base + "/auth/refresh", json={"refreshToken": tokens["refreshToken"]}
        )
        assert status == 200
        assert new["refreshToken"] != tokens["refreshToken"]
        assert new["accessToken"] != tokens["accessToken"]
        assert (await create_task(s, base, new["accessToken"]))[0] == 202
        # presenting the used refresh token again: 403 and every session revoked
        status, err = await call(
            s, "POST", base + "/auth/refresh", json={"refreshToken": tokens["refreshToken"]}
        )
        assert status == 403 and err["error"]["message"] == "Token reuse detected"
        assert (await create_task(s, base, new["accessToken"]))[0] == 401
        # the stored refresh token was cleared: the newest one is refused too (the real contract)
        status, err = await call(
            s, "POST", base + "/auth/refresh", json={"refreshToken": new["refreshToken"]}
        )
        assert status == 403 and err["error"]["message"] == "Access denied"
        status, err = await call(s, "POST", base + "/auth/refresh", json={"refreshToken": "x.y"})
        assert status == 401 and err["error"]["message"] == "jwt malformed"
        assert (await call(s, "POST", base + "/auth/refresh", json={}))[0] == 400


async def test_logout_200_revokes_session(target: ReferenceTarget) -> None:
    base = target.base_url
    async with aiohttp.ClientSession() as s:
        tokens = await signup(s, base)
        status, body = await call(s, "POST", base + "/auth/logout", headers=bearer(tokens["accessToken"]))
        assert status == 200 and body["success"] is True
        assert (await create_task(s, base, tokens["accessToken"]))[0] == 401
        assert (await call(s, "POST", base + "/auth/logout"))[0] == 401


async def test_tasks_202_and_400s_and_401s(target: ReferenceTarget) -> None:
    base = target.base_url
    async with aiohttp.ClientSession() as s:
        token = (await signup(s, base))["accessToken"]
        for t in TASK_TYPES:
            status, body = await create_task(s, base, token, t)
            assert status == 202, body
            assert body["success"] is True and body["message"]
            assert str(uuid.UUID(body["taskId"], version=4)) == body["taskId"]
        for bad in ({"payload": {}}, {"type": "mine-bitcoin"}, {"type": ""}):
            status, err = await call(s, "POST", base + "/tasks", headers=bearer(token), json=bad)
            assert status == 400 and err == {
                "success": False,
                "error": {"message": err["error"]["message"], "status": 400},
            }
        status, _ = await call(s, "POST", base + "/tasks", headers=bearer(token), data=b"{oops")
        assert status == 400
        status, body = await call(s, "POST", base + "/tasks", json={"type": "generate-pdf"})
        assert status == 401 and "message" in body
        status, body = await create_task(s, base, "not-a-jwt")
        assert status == 401 and body == {"message": "Invalid token"}


async def test_health_and_metrics_count(target: ReferenceTarget) -> None:
    base = target.base_url
    before = await target.ametrics()
    async with aiohttp.ClientSession() as s:
        status, body = await call(s, "GET", base + "/health")
        assert status == 200 and body["status"] == "ok"
        for service in ("database", "redis"):
            assert body["services"][service]["status"] == "up"
            assert isinstance(body["services"][service]["latency"], int)
        assert body["uptime"] >= 0 and body["timestamp"].endswith("Z")
        token = (await signup(s, base))["accessToken"]
        await asyncio.gather(*(create_task(s, base, token, "etl-data") for _ in range(5)))
        await asyncio.gather(*(call(s, "GET", base + "/health") for _ in range(9)))
        async with s.get(base + "/metrics") as r:
            assert r.status == 200 and r.content_type == "text/plain"
            text = await r.text()
    assert "# TYPE taskforge_http_request_duration_seconds histogram" in text
    after = await target.ametrics()
    req, req0 = after["taskforge_http_requests_total"], before["taskforge_http_requests_total"]
    assert req[("GET /health", "200")] - req0.get(("GET /health", "200"), 0) == 10
    assert req[("POST /tasks", "202")] - req0.get(("POST /tasks", "202"), 0) == 5
    created = after["taskforge_tasks_created_total"][("etl-data",)]
    assert created - before.get("taskforge_tasks_created_total", {}).get(("etl-data",), 0) == 5
    hist = after["taskforge_http_request_duration_seconds_count"]
    assert hist[("GET /health",)] >= 10
    assert ("taskforge_ws_connections") in after


async def test_expired_access_token_401() -> None:
    async with ReferenceTarget(access_ttl=1.0, hash_iterations=1000) as t:
        async with aiohttp.ClientSession() as s:
            token = (await signup(s, t.base_url))["accessToken"]
            assert (await create_task(s, t.base_url, token))[0] == 202
            await asyncio.sleep(1.2)
            status, body = await create_task(s, t.base_url, token)
            assert status == 401 and body == {"message": "Token expired"}
