"""Large response bodies on the fast client (issue 12.6): linear accumulation, a size limit.

Speed (a 100 MB body within 2x aiohttp's time) is measured by benchmarks/bench_faults.py.
"""

from __future__ import annotations

import asyncio

import taskforge_perf as tfp
from taskforge_perf.engine.fastclient import MAX_BODY_BYTES, FastClient
from taskforge_perf.mix import Endpoint
from tests.engine.fault_server import FaultServer

BIG = 100_000_000


async def _get_big(client: FastClient) -> tuple[int, bytes, str | None]:
    tmpl = client.template("GET", "/big", {}, auth=False)
    assert tmpl is not None
    return await client.request(tmpl.build(None, None))


async def test_100_mb_body_is_received_whole_on_the_fast_path() -> None:
    assert MAX_BODY_BYTES > BIG
    async with FaultServer(big_size=BIG) as server:
        client = FastClient(server.url, timeout=60.0)
        try:
            status, body, err = await _get_big(client)
            assert (status, err, len(body)) == (200, None, BIG)
            assert body.count(b"x") == BIG
            # The connection is kept and serves the next (small) request.
            tmpl = client.template("GET", "/ok", {}, auth=False)
            assert tmpl is not None
            assert await client.request(tmpl.build(None, None)) == (200, b"ok", None)
            assert client.connections_made == 1
        finally:
            client.close()

        # And as a row of a run, with the default Target timeout (10 s).
        mix = tfp.RequestMix([Endpoint("GET /big", "GET", "/big", auth=False)])
        tester = tfp.LoadTester(server.url, tfp.UserPool(count=1), mix, http_client="fast")
        run = await tester.run(duration=0.2, concurrency=1)
    load = run.load_events()
    assert load.height >= 1 and load["error"].null_count() == load.height
    assert (load["bytes_in"] == BIG).all() and (load["status"] == 200).all()


async def test_body_over_the_limit_is_a_protocol_error_and_closes_the_connection() -> None:
    async with FaultServer(big_size=300_000) as server:  # several chunks
        client = FastClient(server.url, timeout=10.0, max_body=100_000)
        try:
            status, body, err = await _get_big(client)
            assert err == "protocol" and body == b""
            for _ in range(1000):  # bounded: the close is seen by connection_lost, soon after
                if not client.open_connections:
                    break
                await asyncio.sleep(0.01)
            assert client.open_connections == 0  # closed, not returned to the pool
        finally:
            client.close()
        exact = FastClient(server.url, timeout=10.0, max_body=300_000)
        try:
            status, body, err = await _get_big(exact)
            assert (status, err, len(body)) == (200, None, 300_000)
        finally:
            exact.close()


async def test_many_chunked_bodies_are_joined_in_order() -> None:
    async with FaultServer(big_size=5_000_000) as server:
        client = FastClient(server.url, timeout=10.0)
        try:
            for _ in range(3):  # the per-request state is reset between requests
                status, body, err = await _get_big(client)
                assert (status, err, len(body)) == (200, None, 5_000_000)
        finally:
            client.close()
