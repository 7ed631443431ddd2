"""Regenerate the sample runs in data/samples/: a baseline and a candidate build of the reference target.

The candidate profile of the reference target makes POST /tasks about 30% slower than a 20 ms base
(see ``TargetConfig``), so ``tfp.compare(baseline, candidate)`` has a real regression to find.

    .venv/bin/python data/make_samples.py            # ~30 s, loopback only
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import taskforge_perf as tfp

HERE = Path(__file__).resolve().parent / "samples"
PLAN = tfp.StressPlan(
    [
        tfp.Phase("warmup", 2, rate=50),
        tfp.Phase("peak", 8, rate=150),
        tfp.Phase("cooldown", 2, rate=30),
    ]
)


def record(profile: str, name: str) -> tfp.Run:
    """One run of the TaskForge mix against the reference target with the given profile."""
    knobs = {
        "latency": "POST /tasks=exp:20ms,GET /health=2ms",
        "hash_iterations": 1000,
        "profile": profile,
        "seed": 42,
    }
    with tfp.ReferenceTarget(**knobs) as target:
        users = tfp.UserPool(count=10, email_prefix="sample")
        tester = tfp.LoadTester(target, users, tfp.RequestMix.taskforge(), seed=42)
        run = tester.run_sync(PLAN, name=name)
    run.meta["target_version"] = profile
    return run


def main() -> int:
    for profile, name in (("baseline", "baseline"), ("candidate", "candidate")):
        run = record(profile, name)
        out = HERE / name
        shutil.rmtree(out, ignore_errors=True)
        run.save(out)
        print(f"{name}: {run.events.height} rows -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
