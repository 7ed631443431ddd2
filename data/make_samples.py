"""Regenerate the sample runs in data/samples/: three runs each of a baseline and a candidate build.

Two reference targets run side by side, one with the candidate profile (POST /tasks about 30%
slower than a 20 ms base, see ``TargetConfig``), and the runs alternate A B A B A B
(``tfp.run_interleaved``), so ``tfp.compare(baselines, candidates)`` has a real regression to find
with runs as replicates. Run 1 of each side is saved as ``baseline`` / ``candidate`` (the pair the
report and notebooks open), runs 2 and 3 as ``baseline-2`` ... ``candidate-3``.

    .venv/bin/python data/make_samples.py            # ~1.5 min, loopback only
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import taskforge_perf as tfp

HERE = Path(__file__).resolve().parent / "samples"
RUNS = 3
PLAN = tfp.StressPlan(
    [
        tfp.Phase("warmup", 2, rate=50),
        tfp.Phase("peak", 8, rate=150),
        tfp.Phase("cooldown", 2, rate=30),
    ]
)
KNOBS = {"latency": "POST /tasks=exp:20ms,GET /health=2ms", "hash_iterations": 1000, "seed": 42}


async def record() -> tuple[list[tfp.Run], list[tfp.Run]]:
    """Interleaved runs of the TaskForge mix against a baseline and a candidate target."""
    async with (
        tfp.ReferenceTarget(profile="baseline", **KNOBS) as a,
        tfp.ReferenceTarget(profile="candidate", **KNOBS) as b,
    ):

        def factory(target: tfp.ReferenceTarget) -> tfp.LoadTester:
            users = tfp.UserPool(count=10, email_prefix="sample")
            return tfp.LoadTester(target, users, tfp.RequestMix.taskforge(), seed=42, live=False)

        return await tfp.run_interleaved(lambda: factory(a), lambda: factory(b), PLAN, runs=RUNS)


def main() -> int:
    base, cand = asyncio.run(record())
    for name, runs in (("baseline", base), ("candidate", cand)):
        for i, run in enumerate(runs, start=1):
            run.meta["target_version"] = name
            out = HERE / (name if i == 1 else f"{name}-{i}")
            shutil.rmtree(out, ignore_errors=True)
            run.save(out)
            print(f"{out.name}: {run.events.height} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
