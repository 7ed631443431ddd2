"""The tester against a hostile target (issue 12): three figures, before/after style.

1. A 100 MB response body: seconds per request on the fast client vs aiohttp (interleaved,
   median of ``--repeat``); the goal is fast <= 2x aiohttp.
2. Closed model on 429 answers with ``Retry-After: 1``: requests/s the target receives
   (server-side count) with 10 virtual users, honouring Retry-After and not.
3. Failing logins (reference target answering 500 to every login and refresh, 1 s tokens):
   logins/s the target receives (its /metrics), 5 users, 10 virtual users.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_faults.py [--seconds 4] [--repeat 3] [--no-write]

Traffic goes only to servers it starts on 127.0.0.1. Appends a dated section to RESULTS.md.
Runs on older versions of the package too (to measure "before"): options they lack are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import inspect
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

import taskforge_perf as tfp
from taskforge_perf.engine.fastclient import FastClient
from taskforge_perf.mix import Endpoint, task_endpoint

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BIG = 100_000_000


class Server:
    """/big (a 100 MB body) and /busy (429 with Retry-After: 1); counts /busy."""

    def __init__(self) -> None:
        self.busy = 0
        self.body = b"x" * BIG
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        async def big(request: web.Request) -> web.Response:
            return web.Response(body=self.body)

        async def busy(request: web.Request) -> web.Response:
            self.busy += 1
            return web.Response(status=429, body=b"slow down", headers={"Retry-After": "1"})

        async def plain(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"accessToken": "t", "refreshToken": "r"}, status=201)

        app = web.Application()
        app.router.add_get("/big", big)
        app.router.add_get("/busy", busy)
        app.router.add_get("/health", plain)
        for p in ("signup", "login", "refresh", "logout"):
            app.router.add_post(f"/auth/{p}", plain)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"


async def body_fast(url: str) -> float:
    client = FastClient(url, timeout=120.0)
    tmpl = client.template("GET", "/big", {}, auth=False)
    assert tmpl is not None
    t0 = time.perf_counter()
    status, body, err = await client.request(tmpl.build(None, None))
    dt_s = time.perf_counter() - t0
    client.close()
    assert (status, err, len(body)) == (200, None, BIG), (status, err, len(body))
    return dt_s


async def body_aiohttp(url: str) -> float:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        t0 = time.perf_counter()
        async with s.get(url + "/big") as r:
            body = await r.read()
        dt_s = time.perf_counter() - t0
    assert len(body) == BIG
    return dt_s


async def busy_rate(server: Server, seconds: float, honor: bool) -> float | None:
    kwargs = {}
    if "honor_retry_after" in inspect.signature(tfp.LoadTester).parameters:
        kwargs["honor_retry_after"] = honor
    elif honor:
        return None  # this version has no Retry-After support: nothing to measure
    mix = tfp.RequestMix([Endpoint("GET /busy", "GET", "/busy", auth=False)])
    tester = tfp.LoadTester(server.url, tfp.UserPool(count=1), mix, seed=1, live=False, **kwargs)
    n0 = server.busy
    run = await tester.run(duration=seconds, concurrency=10)
    return (server.busy - n0) / run.duration_s


async def login_rate(seconds: float) -> tuple[float, float]:
    errors = {"POST /auth/login": 1.0, "POST /auth/refresh": 1.0}
    async with tfp.ReferenceTarget(seed=1, access_ttl=1.0, error_rate=errors, hash_iterations=1000) as t:
        mix = tfp.RequestMix([task_endpoint("generate-pdf")])
        tester = tfp.LoadTester(t, tfp.UserPool(count=5, email_prefix="bench"), mix, seed=1, live=False)
        run = await tester.run(duration=seconds, concurrency=10)
        m = await t.ametrics()
    logins = m.get("taskforge_http_requests_total", {}).get(("POST /auth/login", "500"), 0.0)
    return logins / run.duration_s, run.load_events().height / run.duration_s


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    server = Server()
    await server.start()
    fast: list[float] = []
    slow: list[float] = []
    try:
        for _ in range(args.repeat):  # interleaved
            fast.append(await body_fast(server.url))
            slow.append(await body_aiohttp(server.url))
        honored = await busy_rate(server, args.seconds, True)
        ignored = await busy_rate(server, args.seconds, False)
    finally:
        assert server.runner is not None
        await server.runner.cleanup()
    logins, rows = await login_rate(args.seconds)
    return {
        "fast": statistics.median(fast),
        "aiohttp": statistics.median(slow),
        "honored": honored,
        "ignored": ignored,
        "logins": logins,
        "rows": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="load duration of parts 2 and 3")
    ap.add_argument("--repeat", type=int, default=3, help="100 MB transfers per client")
    ap.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--label", default="", help="added to the section title, e.g. 'before (main)'")
    args = ap.parse_args()
    load0 = os.getloadavg()
    r = asyncio.run(main_async(args))
    load1 = os.getloadavg()
    honored = "n/a" if r["honored"] is None else f"{r['honored']:,.1f}"
    lines = [
        "",
        f"## Hostile target (issue 12){' ' + args.label if args.label else ''} — "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, aiohttp "
        f"{aiohttp.__version__}; load average {load0[0]:.2f} before, {load1[0]:.2f} after; "
        "`benchmarks/bench_faults.py` (medians of "
        f"{args.repeat} interleaved transfers; loads of {args.seconds:g} s).",
        "",
        f"- 100 MB body: fast client {r['fast']:.2f} s, aiohttp {r['aiohttp']:.2f} s "
        f"(ratio {r['fast'] / r['aiohttp']:.2f}; goal <= 2)",  # type: ignore[operator]
        f"- 429 + Retry-After: 1, 10 closed-model users: {honored} req/s honoured, "
        f"{r['ignored']:,.0f} req/s with honor_retry_after=False",
        f"- every login and refresh answered 500, 5 users, 10 virtual users: "
        f"{r['logins']:.1f} logins/s at the target ({r['rows']:,.0f} rows/s recorded)",
    ]
    print("\n".join(lines))
    if not args.no_write:
        with RESULTS.open("a") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
