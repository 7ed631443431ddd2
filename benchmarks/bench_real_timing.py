"""The ``real_timing`` profile of the reference target against the real TaskForge figures (issue 17).

Real system, this kind of 2-core machine with the tester beside it (DESIGN.md section 4): HTTP
alone holds ~450 req/s of the default mix (p95 86 ms) and breaks at ~500; with 50 sockets it holds
~300 req/s and breaks at ~350; signup and login cost 120-145 ms. This script starts
``ReferenceTarget(real_timing=True)`` on 127.0.0.1 and runs the default mix in the open model at
each ``--rates`` value (``--sockets`` WebSockets), printing per rate: achieved req/s, p50/p95 of the
answered rows, response time p95 (from the intended start), and the signup p50.

    .venv/bin/python benchmarks/bench_real_timing.py --duration 8
    .venv/bin/python benchmarks/bench_real_timing.py --duration 8 --sockets 50 --rates 300,350
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

import taskforge_perf as tfp  # noqa: E402
from taskforge_perf.schema import answered_expr  # noqa: E402


async def one(rate: float, a: argparse.Namespace) -> dict[str, float]:
    async with tfp.ReferenceTarget(real_timing=True, hash_iterations=1000, seed=9) as target:
        tester = tfp.LoadTester(
            target,
            tfp.UserPool(count=20, email_prefix=f"timing{int(rate)}"),
            websockets=a.sockets,
            seed=9,
            live=False,
        )
        run = await tester.run(duration=a.duration, rate=rate)
    ev = run.events
    load = run.load_events().filter(answered_expr())
    lat = (pl.col("t_end") - pl.col("t_start")) / 1e6
    resp = (pl.col("t_end") - pl.col("t_intended")) / 1e6
    signup = ev.filter(pl.col("endpoint").cast(pl.String) == "POST /auth/signup")
    return {
        "rate": rate,
        "achieved": run.load_events().height / run.duration_s,
        "p50_ms": float(load.select(lat.quantile(0.5)).item()),
        "p95_ms": float(load.select(lat.quantile(0.95)).item()),
        "resp_p95_ms": float(load.select(resp.quantile(0.95)).item()),
        "signup_p50_ms": float(signup.select(lat.quantile(0.5)).item()),
        "saturated": float(run.generator_saturated),
    }


async def main(a: argparse.Namespace) -> None:
    for rate in (float(r) for r in a.rates.split(",")):
        r = await one(rate, a)
        print(
            f"{r['rate']:.0f} req/s, {a.sockets} sockets: achieved {r['achieved']:.0f} req/s, "
            f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, response p95 {r['resp_p95_ms']:.1f} ms, "
            f"signup p50 {r['signup_p50_ms']:.0f} ms, generator saturated: {bool(r['saturated'])}",
            flush=True,
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--rates", default="450,500")
    p.add_argument("--sockets", type=int, default=0)
    asyncio.run(main(p.parse_args()))
