"""The fast HTTP client (engine.fastclient) against the aiohttp path and misbehaving servers.

Timing claims live in benchmarks/bench_engine.py (the truth check); here both paths must agree
structurally and roughly.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import polars as pl
import pytest
from aiohttp import web

import taskforge_perf as tfp
from taskforge_perf.engine.fastclient import RequestTemplate, redirect_location, task_id
from taskforge_perf.mix import TASK_TYPES, Endpoint, task_builder, task_endpoint

CLIENTS = ("fast", "aiohttp")


def ep(path: str, method: str = "GET", auth: bool = False) -> tfp.RequestMix:
    return tfp.RequestMix([Endpoint(f"{method} {path}", method, path, auth=auth)])


# --- a raw HTTP/1.1 server that can misbehave on purpose ---------------------------------------


class RawServer:
    """Keep-alive HTTP/1.1 on asyncio streams; the path picks the (mis)behaviour."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.load_conns: set[int] = set()  # connections that served at least one /ok
        self.accepted = 0
        self.issued = 0
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self._writers):
            w.close()
        await self.server.wait_closed()

    @staticmethod
    def _answer(status: int, body: bytes, extra: str = "") -> bytes:
        reason = {200: "OK", 201: "Created", 202: "Accepted", 302: "Found", 401: "Unauthorized"}
        head = (
            f"HTTP/1.1 {status} {reason.get(status, 'X')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        )
        return head.encode() + body

    def _tokens(self, status: int) -> bytes:
        self.issued += 1
        body = json.dumps({"accessToken": f"tok-{self.issued}", "refreshToken": f"r-{self.issued}"})
        return self._answer(status, body.encode())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        me = id(writer)
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                pairs = (ln.partition(":") for ln in lines[1:] if ln)
                headers = {k.lower(): v.strip() for k, _, v in pairs}
                n = int(headers.get("content-length", "0"))
                if n:
                    await reader.readexactly(n)
                auth = headers.get("authorization", "")
                if path == "/health":
                    writer.write(self._answer(200, b'{"status":"ok"}'))
                elif path in ("/auth/signup",):
                    writer.write(self._tokens(201))
                elif path in ("/auth/login", "/auth/refresh"):
                    writer.write(self._tokens(200))
                elif path == "/auth/logout":
                    writer.write(self._answer(200, b'{"success":true}'))
                elif path == "/ok":
                    self.load_conns.add(me)
                    writer.write(self._answer(200, b"ok"))
                elif path == "/tasks":
                    tid = random.randrange(10**9)
                    writer.write(self._answer(202, b'{"success":true,"taskId":"t-%d"}' % tid))
                elif path == "/needs-fresh":  # the first token issued is rejected once
                    if auth == "Bearer tok-1":
                        writer.write(self._answer(401, b'{"error":"expired"}'))
                    else:
                        writer.write(self._answer(200, b"fresh"))
                elif path == "/redir":
                    writer.write(self._answer(302, b"", "Location: /ok\r\n"))
                elif path == "/junk":
                    writer.write(b"THIS IS NOT HTTP\r\n\r\n")
                    await writer.drain()
                    return
                elif path == "/close-mid":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                    await writer.drain()
                    return
                elif path == "/eof":  # HTTP/1.0 style: the body ends with the connection
                    writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody")
                    await writer.drain()
                    return
                elif path == "/stall":
                    await asyncio.sleep(30)
                    return
                else:
                    writer.write(self._answer(404, b"{}"))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


@pytest.fixture
async def raw() -> AsyncIterator[RawServer]:
    async with RawServer() as server:
        yield server


def kinds(run: tfp.Run) -> dict[str | None, int]:
    load = run.load_events()
    return dict(load.group_by(pl.col("error").cast(pl.String)).len().iter_rows())


# --- pure pieces ---------------------------------------------------------------------------------


def test_body_templates_match_json_and_draw_the_same_randoms() -> None:
    for t in TASK_TYPES:
        build = task_builder(t)
        for seed in range(50):
            a, b = random.Random(seed), random.Random(seed)
            want = json.dumps(build("u", "tok", a), separators=(",", ":")).encode()
            assert task_endpoint(t).body("u", "tok", b) == want
            assert a.random() == b.random()


def test_request_template_splices_token_and_body() -> None:
    t = RequestTemplate(
        "POST",
        "/a%20b",
        "h:1",
        {"Content-Type": "application/json", "Authorization": "x"},
        auth=True,
    )
    got = t.build("TOKEN", b'{"k":"%d"}')
    assert got == (
        b"POST /a%20b HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\n"
        b'Authorization: Bearer TOKEN\r\nContent-Length: 10\r\n\r\n{"k":"%d"}'
    )
    assert t.build(None, None).endswith(b"Content-Length: 0\r\n\r\n")


def test_task_id_bytes_search_and_fallback() -> None:
    assert task_id(b'{"success":true,"taskId":"abc-1"}') == "abc-1"
    assert task_id(b'{"taskId": "spaced"}') == "spaced"  # not the compact form: json.loads
    assert task_id(b'{"taskId":"esc\\"aped"}') == 'esc"aped'
    assert task_id(b'{"taskId":""}') is None
    assert task_id(b"garbage") is None
    assert task_id(b'{"taskId":1}') is None
    assert redirect_location(302, b"HTTP/1.1 302 Found\r\nlocation: /x\r\n\r\n") == "/x"
    assert redirect_location(200, b"HTTP/1.1 200 OK\r\nLocation: /x\r\n\r\n") is None


def test_http_client_option_is_validated() -> None:
    with pytest.raises(tfp.ConfigError, match="http_client must be 'fast' or 'aiohttp'"):
        tfp.LoadTester("http://127.0.0.1:1", tfp.UserPool(count=1), http_client="httpx")


# --- both clients against the reference target ---------------------------------------------------


@pytest.mark.exclusive  # every planned arrival on time (no drop) and medians within 25%
async def test_both_clients_agree_on_the_reference_target() -> None:
    runs = {}
    async with tfp.ReferenceTarget(latency="*=20ms", hash_iterations=1000, seed=31) as target:
        for client in CLIENTS:
            tester = tfp.LoadTester(
                target,
                tfp.UserPool(count=4, email_prefix=f"agree{client}"),
                seed=7,
                http_client=client,
            )
            runs[client] = await tester.run(duration=2, rate=100)
    counts = {}
    medians = {}
    for client, run in runs.items():
        load = run.load_events()
        assert run.meta["http_client"] == client
        grouped = load.group_by(
            pl.col("endpoint").cast(pl.String), "status", pl.col("error").cast(pl.String)
        ).len()
        counts[client] = {(r[0], r[1], r[2]): r[3] for r in grouped.iter_rows()}
        medians[client] = ((load["t_end"] - load["t_start"]) / 1e6).median()
        tasks = load.filter(pl.col("endpoint").cast(pl.String).str.starts_with("POST /tasks"))
        assert tasks["task_id"].null_count() == 0 and (tasks["bytes_out"] > 0).all()
    # Same seed, same schedule: the same requests per endpoint and status on both paths.
    assert counts["fast"] == counts["aiohttp"]
    assert sum(counts["fast"].values()) == 200
    assert all(err is None for (_, _, err) in counts["fast"])
    # Latency: both see the 20 ms delay, and roughly the same figure (precision: the benchmark).
    fast, aio = medians["fast"], medians["aiohttp"]
    assert fast is not None and aio is not None
    assert 20 <= fast < 60 and 20 <= aio < 60
    assert abs(fast - aio) / aio < 0.25, medians


# --- failures become rows of the right kind ------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
async def test_garbage_response_is_a_protocol_error(raw: RawServer, client: str) -> None:
    tester = tfp.LoadTester(raw.url, tfp.UserPool(count=1), ep("/junk"), http_client=client)
    run = await tester.run(duration=0.5, concurrency=2)
    assert set(kinds(run)) == {"protocol"}, kinds(run)
    assert (run.load_events()["status"] == 0).all()


@pytest.mark.parametrize("client", CLIENTS)
async def test_close_mid_response_is_a_reset(raw: RawServer, client: str) -> None:
    tester = tfp.LoadTester(raw.url, tfp.UserPool(count=1), ep("/close-mid"), http_client=client)
    run = await tester.run(duration=0.5, concurrency=2)
    assert set(kinds(run)) == {"reset"}, kinds(run)


@pytest.mark.parametrize("client", CLIENTS)
async def test_body_framed_by_close_is_complete(raw: RawServer, client: str) -> None:
    tester = tfp.LoadTester(raw.url, tfp.UserPool(count=1), ep("/eof"), http_client=client)
    run = await tester.run(duration=0.5, concurrency=2)
    load = run.load_events()
    assert set(kinds(run)) == {None} and load.height > 5
    assert (load["status"] == 200).all() and (load["bytes_in"] == 4).all()


@pytest.mark.parametrize("client", CLIENTS)
async def test_stalled_server_is_a_timeout(raw: RawServer, client: str) -> None:
    target = tfp.Target(raw.url, request_timeout=0.3)
    tester = tfp.LoadTester(target, tfp.UserPool(count=1), ep("/stall"), http_client=client)
    run = await tester.run(duration=0.5, concurrency=3)
    load = run.load_events()
    assert set(kinds(run)) == {"timeout"} and load.height >= 3
    lat = (load["t_end"] - load["t_start"]) / 1e9
    assert lat.min() >= 0.29 and lat.max() < 1.0


async def test_fast_client_keeps_one_connection_per_virtual_user(raw: RawServer) -> None:
    tester = tfp.LoadTester(raw.url, tfp.UserPool(count=2), ep("/ok"), http_client="fast")
    run = await tester.run(duration=1, concurrency=4)
    assert run.load_events().height > 200 and set(kinds(run)) == {None}
    assert len(raw.load_conns) == 4


@pytest.mark.parametrize("client", CLIENTS)
async def test_401_reauthenticates_once_and_retries(raw: RawServer, client: str) -> None:
    tester = tfp.LoadTester(raw.url, tfp.UserPool(count=1), ep("/needs-fresh", auth=True), http_client=client)
    run = await tester.run(duration=0.5, concurrency=1)
    load = run.load_events()
    assert load["status"][0] == 401 and load["error"][0] == "http_4xx"
    assert (load["status"][1:] == 200).all() and load.height > 10
    assert run.meta["counters"]["reauths"] == 1
    assert run.events.filter(pl.col("endpoint") == "POST /auth/refresh").height == 1


@pytest.mark.parametrize("client", CLIENTS)
async def test_redirect_is_followed_on_both_paths(raw: RawServer, client: str) -> None:
    tester = tfp.LoadTester(raw.url, tfp.UserPool(count=1), ep("/redir"), http_client=client)
    run = await tester.run(duration=0.5, concurrency=2)
    load = run.load_events()
    assert load.height > 5 and (load["status"] == 200).all() and (load["bytes_in"] == 2).all()


# --- HTTPS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(crt),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return crt, key


@pytest.mark.parametrize("client", CLIENTS)
async def test_https_target_on_both_paths(cert: tuple[Path, Path], client: str) -> None:
    crt, key = cert
    seen: list[str] = []

    async def tokens(request: web.Request) -> web.Response:
        return web.json_response(
            {"accessToken": "tls-token", "refreshToken": "r"},
            status=201 if request.path.endswith("signup") else 200,
        )

    async def tasks(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        await request.read()
        return web.json_response({"success": True, "taskId": f"t{len(seen)}"}, status=202)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", ok)
    app.router.add_get("/metrics", ok)
    app.router.add_post("/tasks", tasks)
    for p in ("signup", "login", "refresh", "logout"):
        app.router.add_post(f"/auth/{p}", tokens)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(crt, key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    try:
        port = runner.addresses[0][1]
        client_ctx = ssl.create_default_context(cafile=str(crt))
        tester = tfp.LoadTester(
            f"https://127.0.0.1:{port}",
            tfp.UserPool(count=2),
            seed=3,
            http_client=client,
            ssl_context=client_ctx,
        )
        run = await tester.run(duration=1, concurrency=4)
    finally:
        await runner.cleanup()
    load = run.load_events()
    assert load.height > 20 and set(kinds(run)) == {None}, kinds(run)
    tasks_rows = load.filter(pl.col("endpoint").cast(pl.String).str.starts_with("POST /tasks"))
    assert tasks_rows.height > 0 and tasks_rows["task_id"].null_count() == 0
    assert set(seen) == {"Bearer tls-token"}


async def test_aiohttp_path_records_a_reset_instead_of_retrying() -> None:
    """aiohttp retries an idempotent GET once on a failed kept-alive connection; the session
    LoadTester builds (``_retry_connection = False``) records the failure instead."""
    import aiohttp

    from taskforge_perf.engine.failures import classify

    async def second_request_fails(retry: bool) -> tuple[int, BaseException | None]:
        accepted = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            try:
                await reader.readuntil(b"\r\n\r\n")
                body = b'{"status":"ok"}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                await reader.readuntil(b"\r\n\r\n")  # the next request on the kept-alive socket
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            writer.transport.abort()  # ... is answered by a reset

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/health"
        error: BaseException | None = None
        try:
            async with aiohttp.ClientSession() as session:
                session._retry_connection = retry
                async with session.get(url) as r:
                    await r.read()
                try:
                    async with session.get(url) as r:
                        await r.read()
                except aiohttp.ClientError as exc:
                    error = exc
        finally:
            server.close()
            await server.wait_closed()
        return accepted, error

    accepted, error = await second_request_fails(retry=True)  # aiohttp's default
    assert accepted == 2  # it reconnected and resent behind the caller's back
    accepted, error = await second_request_fails(retry=False)  # as LoadTester sets it
    assert accepted == 1 and error is not None and classify(error) in {"reset", "protocol"}
