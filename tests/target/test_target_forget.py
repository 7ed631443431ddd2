"""``POST /auth/remove-test-users``: the real system's clean-up route, a target that forgets."""

from __future__ import annotations

import uuid

import aiohttp
from target_helpers import PASSWORD, call, create_task, signup

from taskforge_perf.target import ReferenceTarget


async def test_remove_test_users_forgets_load_users_and_their_sessions(target: ReferenceTarget) -> None:
    base = target.base_url
    load_addr = f"load-{uuid.uuid4().hex[:10]}@example.com"
    other_addr = f"keep-{uuid.uuid4().hex[:10]}@example.com"
    async with aiohttp.ClientSession() as s:
        load_tokens = await signup(s, base, load_addr)
        other_tokens = await signup(s, base, other_addr)
        status, body = await call(s, "POST", base + "/auth/remove-test-users")
        assert status == 200 and body["success"] is True and body["deleted"] >= 1
        # The "load*" user is gone: login 404, its session revoked, its refresh token refused.
        creds = {"email": load_addr, "password": PASSWORD}
        status, _ = await call(s, "POST", base + "/auth/login", json=creds)
        assert status == 404
        status, _ = await create_task(s, base, load_tokens["accessToken"])
        assert status == 401
        refresh = {"refreshToken": load_tokens["refreshToken"]}
        status, _ = await call(s, "POST", base + "/auth/refresh", json=refresh)
        assert status == 401
        # ... and can sign up again; other users are kept.
        status, _ = await call(s, "POST", base + "/auth/signup", json=creds)
        assert status == 201
        status, _ = await create_task(s, base, other_tokens["accessToken"])
        assert status == 202
