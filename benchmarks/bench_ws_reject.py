"""How fast the ``real_quirks`` gateway closes a refused socket (issue 17), against the real 0.2-1.5 ms.

Starts a ``real_quirks`` reference target on 127.0.0.1 and opens ``--n`` sockets with a bad token,
then ``--n`` with a revoked one (valid signature, session gone after a wrong-password login), and
prints the median and p90 of the time from the open handshake to the close (1005), client side.

    .venv/bin/python benchmarks/bench_ws_reject.py --n 50
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

import taskforge_perf as tfp  # noqa: E402


async def closed_after(url: str) -> float:
    ws = await connect(url)
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(ws.recv(), 5)
    except ConnectionClosed:
        pass
    return (time.perf_counter() - t0) * 1e3


async def main(a: argparse.Namespace) -> None:
    async with tfp.ReferenceTarget(real_quirks=True, hash_iterations=1000, seed=5) as t:
        bad = [await closed_after(f"{t.ws_url}/?token=garbage") for _ in range(a.n)]
        async with aiohttp.ClientSession() as s:
            body = {"email": "reject@example.com", "password": "pw"}
            async with s.post(t.base_url + "/auth/signup", json=body) as r:
                token = (await r.json())["accessToken"]
            async with s.post(t.base_url + "/auth/login", json={**body, "password": "wrong"}):
                pass
        revoked = [await closed_after(f"{t.ws_url}/?token={token}") for _ in range(a.n)]
    for name, xs in (("bad token", bad), ("revoked token", revoked)):
        xs.sort()
        p90 = xs[int(len(xs) * 0.9)]
        print(f"{name}: closed after median {statistics.median(xs):.2f} ms, p90 {p90:.2f} ms")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50)
    asyncio.run(main(p.parse_args()))
