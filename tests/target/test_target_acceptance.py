"""Acceptance: the reference target against DESIGN.md section 4, point by point (issue 17).

Each test names the real behaviour it pins. ``real`` is a ``real_quirks`` target with the real
defaults (2 ms session check, one consumer per queue) and a 100x faster outbox; ``plain`` is the
default target, for the points that are the real contract in every mode.
"""

from __future__ import annotations

import time

import aiohttp
import jwt
from target_helpers import PASSWORD, bearer, call, create_task, email, refresh, rejected_1005, signup

from taskforge_perf.target import ReferenceTarget

# --- tokens ----------------------------------------------------------------------------------------


async def test_access_token_claims_are_id_email_iat_exp_integers(real: ReferenceTarget) -> None:
    async with aiohttp.ClientSession() as s:
        addr = email()
        claims = jwt.decode(
            (await signup(s, real.base_url, addr))["accessToken"], options={"verify_signature": False}
        )
    assert set(claims) == {"id", "email", "iat", "exp"} and claims["email"] == addr
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert claims["exp"] - claims["iat"] == 900


async def test_after_reuse_the_newest_refresh_token_gets_403_access_denied(
    any_target: ReferenceTarget,
) -> None:
    base = any_target.base_url
    async with aiohttp.ClientSession() as s:
        first = await signup(s, base)
        status, newest = await refresh(s, base, first["refreshToken"])
        assert status == 200
        status, err = await refresh(s, base, first["refreshToken"])
        assert status == 403 and err["error"]["message"] == "Token reuse detected"
        status, err = await refresh(s, base, newest["refreshToken"])
        assert status == 403 and err["error"]["message"] == "Access denied"


async def test_wrong_password_revokes_every_session_and_clears_the_refresh_token(
    any_target: ReferenceTarget,
) -> None:
    t = any_target
    async with aiohttp.ClientSession() as s:
        addr = email()
        tokens = await signup(s, t.base_url, addr)
        status, _ = await call(
            s, "POST", t.base_url + "/auth/login", json={"email": addr, "password": "nope"}
        )
        assert status == 401
        status, err = await refresh(s, t.base_url, tokens["refreshToken"])
        assert status == 403 and err["error"]["message"] == "Access denied"
    if t.config.real_quirks:  # the session is gone: the gateway refuses the token
        await rejected_1005(f"{t.ws_url}/?token={tokens['accessToken']}")


async def test_bad_signature_on_a_refresh_token_is_500_invalid_signature(real: ReferenceTarget) -> None:
    async with aiohttp.ClientSession() as s:
        tokens = await signup(s, real.base_url)
        claims = jwt.decode(tokens["refreshToken"], options={"verify_signature": False})
        forged = jwt.encode(claims, "not-the-secret-at-all-not-the-secret", algorithm="HS256")
        status, err = await refresh(s, real.base_url, forged)
        assert status == 500 and err["error"]["message"] == "invalid signature"
        status, err = await refresh(s, real.base_url, "junk")
        assert status == 500 and err["error"]["message"] == "jwt malformed"


async def test_revoked_access_token_still_creates_tasks(real: ReferenceTarget) -> None:
    async with aiohttp.ClientSession() as s:
        addr = email()
        tokens = await signup(s, real.base_url, addr)
        await call(s, "POST", real.base_url + "/auth/login", json={"email": addr, "password": "nope"})
        status, body = await create_task(s, real.base_url, tokens["accessToken"])
        assert status == 202 and body["taskId"]


# --- requests --------------------------------------------------------------------------------------


async def test_tasks_without_payload_are_400(any_target: ReferenceTarget) -> None:
    async with aiohttp.ClientSession() as s:
        token = (await signup(s, any_target.base_url))["accessToken"]
        for body in (
            {"type": "generate-pdf"},
            {"payload": {"url": "u"}},
            {"type": "generate-pdf", "payload": None},
        ):
            status, err = await call(
                s, "POST", any_target.base_url + "/tasks", headers=bearer(token), json=body
            )
            assert status == 400 and err["error"]["message"] == "type and payload are required", body


async def test_form_encoded_bodies_are_parsed(any_target: ReferenceTarget) -> None:
    base = any_target.base_url
    async with aiohttp.ClientSession() as s:
        addr = email()
        status, body = await call(
            s, "POST", base + "/auth/signup", data={"email": addr, "password": PASSWORD}
        )
        assert status == 201 and body["accessToken"]
        status, body = await call(s, "POST", base + "/auth/login", data={"email": addr, "password": PASSWORD})
        assert status == 200 and body["refreshToken"]


async def test_unknown_routes_answer_express_html_404(real: ReferenceTarget) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(real.base_url + "/nope") as r:
            text = await r.text()
            assert r.status == 404 and r.content_type == "text/html"
    assert "<pre>Cannot GET /nope</pre>" in text and text.startswith("<!DOCTYPE html>")


async def test_real_messages(real: ReferenceTarget) -> None:
    base = real.base_url
    async with aiohttp.ClientSession() as s:
        token = (await signup(s, base))["accessToken"]
        status, body = await create_task(s, base, token)
        assert status == 202 and body["message"] == "Task created and queued for dispatch."
        assert await call(s, "POST", base + "/tasks", json={"type": "generate-pdf"}) == (
            401,
            {"message": "Unauthorized"},
        )
        assert await create_task(s, base, "bad") == (401, {"message": "Invalid or expired token"})
        status, err = await call(s, "POST", base + "/auth/refresh", json={})
        assert status == 400 and err["error"]["message"] == "Refresh token required"
        for path in ("/auth/signup", "/auth/login"):
            status, err = await call(s, "POST", base + path, json={"email": email()})
            assert status == 400 and err["error"]["message"] == "Email and password required"


async def test_health_services_and_probes(any_target: ReferenceTarget) -> None:
    base = any_target.base_url
    async with aiohttp.ClientSession() as s:
        status, body = await call(s, "GET", base + "/health")
        assert status == 200 and set(body) == {"status", "timestamp", "services", "uptime"}
        assert set(body["services"]) == {"database", "redis"}
        for svc in body["services"].values():
            assert set(svc) == {"status", "latency"} and svc["status"] == "up" and svc["latency"] >= 0
        for path in ("/health/live", "/health/ready"):
            status, body = await call(s, "GET", base + path)
            assert status == 200 and body["status"], path


async def test_metrics_keep_their_names_and_add_prom_client_families(real: ReferenceTarget) -> None:
    async with aiohttp.ClientSession() as s:
        token = (await signup(s, real.base_url))["accessToken"]
        await create_task(s, real.base_url, token, "etl-data")
        async with s.get(real.base_url + "/metrics") as r:
            text = await r.text()
    m = await real.ametrics()
    assert m["tasks_created_total"][("etl-data",)] >= 1
    assert m["taskforge_tasks_created_total"][("etl-data",)] == m["tasks_created_total"][("etl-data",)]
    assert m["http_requests_total"][("POST", "/tasks", "202")] >= 1
    real_families = {
        line.split()[2]
        for line in text.splitlines()
        if line.startswith("# TYPE") and "taskforge_" not in line
    }
    assert len(real_families) == 34
    assert {"process_cpu_seconds_total", "nodejs_eventloop_lag_seconds", "http_request_duration_seconds"} <= (
        real_families
    )


async def test_remove_test_users_deletes_every_user_whose_email_starts_with_load(
    real: ReferenceTarget,
) -> None:
    base = real.base_url
    async with aiohttp.ClientSession() as s:
        doomed = [f"load-{email()}", f"loadtest{time.monotonic_ns()}@example.com"]
        kept = f"keep-load-{email()}"
        for addr in (*doomed, kept):
            await signup(s, base, addr)
        status, body = await call(s, "POST", base + "/auth/remove-test-users")  # no auth
        assert status == 200 and body["success"] is True and body["deleted"] >= 2
        for addr in doomed:
            status, _ = await call(
                s, "POST", base + "/auth/login", json={"email": addr, "password": PASSWORD}
            )
            assert status == 404, addr
        status, _ = await call(s, "POST", base + "/auth/login", json={"email": kept, "password": PASSWORD})
        assert status == 200
