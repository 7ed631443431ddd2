"""CPU per request of the closed-model hot path alone, A/B between two source trees.

Run from the project root with the project's venv::

    .venv/bin/python benchmarks/bench_hotpath.py --base /tmp/base-tree --rounds 5

Drives ``HttpDriver``'s virtual users (the fast client, full recording into an ``HttpRecorder``)
against bench_engine's nginx (core 1) from a child pinned to core 0, and measures the child's
process CPU time over the load window only (no imports, no set-up, no final frame) divided by
the rows recorded. With ``--base`` the same child runs from another source tree (for example
``git archive`` of the commit before a change) in interleaved rounds, so each change's gain is
a ratio of neighbouring runs: on a shared machine that is what survives the noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def child(url: str, seconds: float, conc: int, path: str) -> dict[str, Any]:
    """The measured part: virtual users for ``seconds``; CPU over the load window / rows."""
    import uvloop

    import taskforge_perf as tfp
    from taskforge_perf.engine.clock import Clock
    from taskforge_perf.engine.fastclient import FastClient
    from taskforge_perf.engine.http import DriverState, HttpDriver
    from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters
    from taskforge_perf.users import User

    async def main() -> dict[str, Any]:
        mix = tfp.RequestMix([tfp.Endpoint("GET static", "GET", path, auth=False)])
        user = User(email="u@example.com", password="p")
        fast = FastClient(url, timeout=10.0)
        rec = HttpRecorder()
        clock = Clock()
        state = DriverState(phase="load")
        drv = HttpDriver(
            None,  # type: ignore[arg-type] - the fast path never touches the aiohttp session
            url,
            mix,
            None,  # type: ignore[arg-type] - no auth on this endpoint
            lambda: user,
            rec,
            LiveCounters(),
            clock,
            random.Random(1),
            state=state,
            fast=fast,
        )
        # Warm the pool (conc connections) and the templates; not measured. Concurrent sends
        # rather than FastClient.preopen, so that older trees without it run the same harness.
        await asyncio.gather(
            *(drv._send(mix.endpoints[0], user, clock.now(), True, None) for _ in range(conc))
        )
        rows0 = rec.rows
        c0, w0 = time.process_time(), time.perf_counter()
        drv.end_ns = clock.now() + int(seconds * 1e9)
        vus: dict[int, asyncio.Task[None]] = {}
        drv.set_level(conc, vus)
        await asyncio.gather(*vus.values())
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        rows = rec.rows - rows0
        errors = sum(1 for e in rec.frame()["error"] if e is not None)
        fast.close()
        return {
            "rows": rows,
            "cpu_us": cpu / rows * 1e6,
            "rps": rows / wall,
            "errors": errors,
            "module": tfp.__file__,  # which tree was measured
        }

    return uvloop.run(main())


def run_tree(tree: str, url: str, seconds: float, conc: int, path: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=tree)
    code = (
        f"import sys, json; sys.path.append({str(HERE)!r}); import bench_hotpath as b; "
        f"print(json.dumps(b.child({url!r}, {seconds!r}, {conc!r}, {path!r})))"
    )
    # -P and cwd=tree: `python -c` would put the working directory first on sys.path, and the
    # tree under test must be the one imported (not the checkout the script runs from).
    cmd = ["taskset", "-c", "0", sys.executable, "-P", "-c", code]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env, check=True, timeout=seconds + 120, cwd=tree
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default=None, help="source tree of the 'before' build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--url", default=None, help="an nginx already running (else one is started)")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import bench_engine as be

    server = None
    url = a.url
    if url is None:
        server = be.Nginx(be.ensure_nginx())
        server.start()
        url = server.url
    here = str(HERE.parent)
    trees = [("after", here)] + ([("before", a.base)] if a.base else [])
    res: dict[str, list[dict[str, Any]]] = {k: [] for k, _ in trees}
    try:
        for i in range(a.rounds):
            for name, tree in trees if i % 2 == 0 else trees[::-1]:
                r = run_tree(tree, url, a.seconds, a.connections, be.STATIC_PATH)
                r["load"] = os.getloadavg()[0]
                res[name].append(r)
                print(
                    f"{name:>6}: {r['cpu_us']:.2f} CPU-us/req, {r['rows']:,} rows, {r['rps']:,.0f} req/s, "
                    f"errors {r['errors']}, load {r['load']:.1f}, {r['module']}",
                    file=sys.stderr,
                )
    finally:
        if server is not None:
            server.stop()
    for name, rs in res.items():
        print(
            f"{name}: median {statistics.median(r['cpu_us'] for r in rs):.2f} CPU-us/req "
            f"over {len(rs)} rounds"
        )
    if a.base:
        ratios = [x["cpu_us"] / y["cpu_us"] for x, y in zip(res["after"], res["before"], strict=True)]
        print(
            f"after/before per round: {', '.join(f'{r:.3f}' for r in ratios)}; "
            f"median {statistics.median(ratios):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
