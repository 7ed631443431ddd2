"""Error samples (issue 16): what the target said, kept on the error path only.

Pure checks of the caps, the text and the merge; then runs against the reference target on
127.0.0.1 (fast client and aiohttp): 5xx bodies and timeouts keep the target's / client's words,
success rows add nothing, a saved run keeps them, a cancelled run too, the report shows them and
never a token or password the target echoed.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf import report_parts as rp
from taskforge_perf.error_samples import (
    MAX_KEYS,
    MAX_TEXT,
    PER_KEY,
    ErrorSamples,
    body_text,
    merge_samples,
    samples_frame,
)
from taskforge_perf.mix import Endpoint, task_endpoint
from taskforge_perf.users import User

FAST = {"hash_iterations": 1000}
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
PASSWORD = "Pw-echo-s3cret-91"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MSwiZW1haWwiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA"


# --- pure -------------------------------------------------------------------------------------


def test_body_text_escapes_binary_redacts_then_truncates() -> None:
    text, cut = body_text(b"bad \xff\xfe bytes \x00\x1b[31m ok \xc3\xa9")
    assert text == "bad \\xff\\xfe bytes \\x00\\x1b[31m ok é" and not cut
    # A token straddling the 500-character cut is masked first: no part of it survives.
    raw = ("x" * (MAX_TEXT - 40) + f" {TOKEN}" + " tail" * 20).encode()
    text, cut = body_text(raw)
    assert cut and len(text) == MAX_TEXT
    assert "eyJhbGci" not in text and TOKEN[:12] not in text
    assert body_text(b"")[0] == ""


def test_caps_per_key_and_per_run_and_the_user_secrets() -> None:
    s = ErrorSamples(worker=3)
    user = User("a@example.com", PASSWORD)
    user.access, user.refresh = TOKEN, "refresh-opaque-token-123"
    for i in range(10):
        body = f'{{"error":"bad {PASSWORD} refresh-opaque-token-123 {i}"}}'.encode()
        s.add("POST /x", "POST", 400, "http_4xx", 100 - i, body, None, user)
    got = s.to_list()
    assert len(got) == PER_KEY == 3
    assert [g["t_start"] for g in got] == [98, 99, 100]  # earliest first (of the first three seen)
    assert all(PASSWORD not in g["message"] and "refresh-opaque" not in g["message"] for g in got)
    assert got[0]["message"].startswith('{"error":"bad *** *** ') and got[0]["worker"] == 3
    for k in range(MAX_KEYS + 10):
        s.add(f"GET /k{k}", "GET", 0, "refused", 1000 + k, b"", None)
    keys = {(g["endpoint"], g["status"], g["error"]) for g in s.to_list()}
    assert len(keys) == MAX_KEYS and s.skipped == 11
    transport = [g for g in s.to_list() if g["status"] == 0]
    assert transport[0]["source"] == "transport"
    assert transport[0]["message"] == "connection refused by the target"  # the kind in words
    json.dumps(s.to_list())  # JSON-safe


def test_merge_keeps_the_earliest_per_key_over_shards() -> None:
    def sample(t: int, worker: int, ep: str = "GET /a") -> dict[str, object]:
        return {"t_start": t, "worker": worker, "endpoint": ep, "status": 500, "error": "http_5xx"}

    a = [sample(10, 0), sample(30, 0), sample(50, 0), sample(5, 0, "GET /b")]
    b = [sample(20, 1), sample(25, 1), sample(60, 1)]
    merged = merge_samples([a, None, b])
    on_a = [(m["t_start"], m["worker"]) for m in merged if m["endpoint"] == "GET /a"]
    assert on_a == [(10, 0), (20, 1), (25, 1)]
    assert [m["t_start"] for m in merged] == sorted(m["t_start"] for m in merged)
    many = [[sample(i, 0, f"GET /{i}")] for i in range(MAX_KEYS + 5)]
    assert len(merge_samples(many)) == MAX_KEYS


def _events(rows: list[tuple[int, int, str | None, str]]) -> pl.DataFrame:
    from taskforge_perf.schema import HTTP_SCHEMA

    data = {c: [] for c in HTTP_SCHEMA}  # type: ignore[var-annotated]
    for t, status, err, ep in rows:
        values = (t, t, t + 1_000_000, status, err, 10, 0, ep, "GET", "u@example.com", "load", 0)
        for c, v in zip(HTTP_SCHEMA, (*values, None, None, None), strict=True):
            data[c].append(v)
    return pl.DataFrame(data, schema=HTTP_SCHEMA)


def test_error_examples_message_and_html_for_new_and_old_runs() -> None:
    ev = _events([(1, 200, None, "GET /a"), (2, 500, "http_5xx", "GET /a"), (3, 0, "reset", "GET /b")])
    long = "<script>alert(1)</script> & " + "y" * 400
    meta = {
        "error_samples": [
            {"t_start": 2, "worker": 0, "endpoint": "GET /a", "method": "GET", "status": 500,
             "error": "http_5xx", "source": "body", "message": long, "truncated": False},
        ]
    }  # fmt: skip
    ex = rp.error_examples(tfp.Run(ev, None, meta))
    by_ep = {r["endpoint"]: r for r in ex.iter_rows(named=True)}
    assert by_ep["GET /a"]["message"] == long and by_ep["GET /b"]["message"] is None
    page = rp.error_examples_html(ex)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<details>" in page and "full text (" in page and "—" in page
    assert "white-space:pre-wrap" in page
    # A run saved before samples existed: the column is there, empty; the frame accessor works.
    old = rp.error_examples(tfp.Run(ev, None, {}))
    assert "message" in old.columns and old["message"].null_count() == old.height == 2
    assert tfp.Run(ev, None, {}).error_samples().height == 0
    assert samples_frame(meta).height == 1 and rp.message_html("") == "<i>(empty body)</i>"


async def test_fast_client_keeps_the_text_of_its_transport_errors() -> None:
    """Refused, closed mid-request and read timeout: the kind and, on the error path, its words."""
    from taskforge_perf.engine.fastclient import FastClient, RequestTemplate

    async def check(answer: bool, expect: tuple[str, str], *, closed: bool = False) -> None:
        done = asyncio.Event()

        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                # Close at once, or wait until the client gives up (its 0.2 s timeout) and aborts.
                await (r.read(1) if answer else r.read())
            except ConnectionError:
                pass
            w.close()
            try:
                await w.wait_closed()
            except ConnectionError:
                pass
            done.set()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        if closed:
            server.close()
            await server.wait_closed()
            done.set()
        client = FastClient(f"http://127.0.0.1:{port}", timeout=0.2)
        try:
            data = RequestTemplate("GET", "/x", client.origin.host_header, {}, auth=False).build(None, None)
            status, body, err = await client.request(data)
            assert (status, body, err) == (0, b"", expect[0])
            assert expect[1] in client.last_error, client.last_error
        finally:
            client.close()
            await asyncio.wait_for(done.wait(), 10)  # the server side closed its socket too
            server.close()
            await server.wait_closed()

    await check(True, ("refused", "ConnectionRefusedError"), closed=True)
    await check(True, ("reset", "closed the connection before a complete answer"))
    await check(False, ("timeout", "no complete answer within 0.2 s"))


# --- against the reference target -----------------------------------------------------------


def _mix() -> tfp.RequestMix:
    return tfp.RequestMix(
        [
            Endpoint("GET /health", "GET", "/health", 4, auth=False),  # answered 200: no sample
            task_endpoint("generate-pdf", 4),  # answered 500 "Injected error"
            Endpoint("GET /health/live", "GET", "/health/live", 1, auth=False),  # 2 s: a timeout
        ]
    )


@pytest.mark.parametrize("client", ["fast", "aiohttp"])
async def test_samples_keep_the_targets_words_on_both_clients(client: str) -> None:
    async with tfp.ReferenceTarget(
        seed=4, error_rate="POST /tasks=1.0", latency="GET /health/live=2s", **FAST
    ) as ref:
        target = tfp.Target(ref.base_url, request_timeout=0.5)
        pool = tfp.UserPool(count=2, email_prefix=f"samples{client}")
        tester = tfp.LoadTester(target, pool, _mix(), seed=4, http_client=client)
        run = await tester.run(duration=1.5, concurrency=4)
    load = run.load_events()
    n5xx = load.filter(pl.col("error") == "http_5xx").height
    assert n5xx > PER_KEY  # many errors of one key ...
    samples = run.meta["error_samples"]
    json.dumps(samples)
    by_key: dict[tuple[str, int, str], list[dict[str, object]]] = {}
    for s in samples:
        by_key.setdefault((s["endpoint"], s["status"], s["error"]), []).append(s)
    pdf = by_key[("POST /tasks generate-pdf", 500, "http_5xx")]
    assert len(pdf) == PER_KEY  # ... three samples
    for s in pdf:
        assert s["source"] == "body" and s["method"] == "POST"
        assert json.loads(str(s["message"]))["error"]["message"] == "Injected error"
    # The samples are the key's first rows, with their clock times.
    first = load.filter(pl.col("error") == "http_5xx").sort("t_start")["t_start"].head(PER_KEY).to_list()
    assert [s["t_start"] for s in pdf] == first
    timeouts = by_key[("GET /health/live", 0, "timeout")]
    assert 1 <= len(timeouts) <= PER_KEY and timeouts[0]["source"] == "transport"
    words = str(timeouts[0]["message"])
    # The fast client's own words; aiohttp's exception type (and text, or the kind in words).
    assert ("within 0.5 s" in words) if client == "fast" else ("Timeout" in words)
    # Success rows add no sample: GET /health (answered 200) has none unless a row of it failed.
    health = load.filter(pl.col("endpoint") == "GET /health")
    health_failed = health.filter(pl.col("error").is_not_null()).height
    assert health.height - health_failed > 10
    assert sum(len(v) for k, v in by_key.items() if k[0] == "GET /health") <= health_failed
    assert set(by_key) <= {(ep, st, str(e)) for ep, st, e in load.select("endpoint", "status", "error")
                           .drop_nulls().unique().iter_rows()}  # fmt: skip
    # Saved and loaded: the same samples, as a frame too; error_examples joins them.
    assert run.path is not None
    again = tfp.load_run(run.path)
    assert again.meta["error_samples"] == samples
    frame = again.error_samples()
    assert frame.height == len(samples) and frame["message"].null_count() == 0
    ex = rp.error_examples(again)
    row = ex.filter(pl.col("endpoint") == "POST /tasks generate-pdf").row(0, named=True)
    assert "Injected error" in row["message"]


async def test_a_cancelled_run_keeps_its_samples() -> None:
    async with tfp.ReferenceTarget(seed=5, error_rate="POST /tasks=1.0", **FAST) as ref:
        mix = tfp.RequestMix([task_endpoint("generate-pdf")])
        tester = tfp.LoadTester(ref, tfp.UserPool(count=2, email_prefix="samplescancel"), mix, seed=5)
        task = asyncio.ensure_future(tester.run(duration=30, concurrency=3))
        for _ in range(3000):  # bounded (30 s); synchronised on the counter, not a sleep's length
            if tester.counters.errors.get("http_5xx", 0) >= 10:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    run = tester.last_run
    assert run is not None and run.meta["stopped"] == "cancelled"
    got = run.meta["error_samples"]
    assert len(got) == PER_KEY and all("Injected error" in s["message"] for s in got)
    assert run.path is not None and tfp.load_run(run.path).meta["error_samples"] == got


@pytest.mark.timeout(180)
def test_echoed_secrets_never_reach_the_saved_run_or_the_report(tmp_path: Path) -> None:
    """The target echoes the bearer token (a JWT) and the password in its 400 body."""

    def echo(user: str, token: str | None, rng: object) -> dict[str, object]:
        return {"type": f"Authorization: Bearer {token} password {PASSWORD}", "payload": {}}

    mix = tfp.RequestMix(
        [
            Endpoint(
                "POST /tasks echo", "POST", "/tasks", build=echo, headers={"Content-Type": "application/json"}
            )
        ]
    )
    with tfp.ReferenceTarget(seed=6, **FAST) as ref:
        pool = tfp.UserPool(count=2, email_prefix="samplesecho", password=PASSWORD)
        tester = tfp.LoadTester(ref, pool, mix, seed=6, save_dir=tmp_path / "runs")
        run = tester.run_sync(duration=0.5, concurrency=2)
    got = run.meta["error_samples"]
    assert got and all(s["status"] == 400 and "Unsupported task type" in s["message"] for s in got)
    assert all("***" in s["message"] for s in got)
    assert run.path is not None
    saved = (run.path / "meta.json").read_text()
    out = tfp.report(run, output=tmp_path / "r.html", progress=False)
    page = Path(out).read_text(encoding="utf-8")
    assert "Unsupported task type" in page and "what the target said" in page
    for text in (saved, page, repr(run.error_samples()), str(run.error_samples().to_dicts())):
        assert PASSWORD not in text
        assert not JWT.findall(text)


async def test_the_closed_models_callback_chain_keeps_the_fast_clients_words() -> None:
    """A request sent by the closed model's callback chain (engine.http_chain: every request of a
    virtual user after its first) that times out keeps the fast client's own words, as one sent
    through ``FastClient.request`` does: one user, so at most one timeout can be a first request."""
    async with tfp.ReferenceTarget(seed=6, latency="GET /health/live=2s", **FAST) as ref:
        target = tfp.Target(ref.base_url, request_timeout=0.3)
        mix = tfp.RequestMix(
            [
                Endpoint("GET /health", "GET", "/health", 1, auth=False),
                Endpoint("GET /health/live", "GET", "/health/live", 3, auth=False),
            ]
        )
        tester = tfp.LoadTester(target, tfp.UserPool(count=1, email_prefix="chainwords"), mix, seed=6)
        run = await tester.run(duration=3.0, concurrency=1)
    timeouts = [s for s in run.meta["error_samples"] if s["error"] == "timeout"]
    assert len(timeouts) == PER_KEY, run.meta["error_samples"]
    for s in timeouts:
        assert s["source"] == "transport" and "within 0.3 s" in str(s["message"]), s
