"""``taskforge-perf capacity``: find the highest rate a target sustains under an SLO.

Thin: parse, build a LoadTester, call ``find_capacity`` (the same API a notebook uses), print.
Exit codes: 0 a rate held the SLO (printed); 1 no rate held it; 3 the load generator saturated
before the target did (its limit is printed, not taken for the target's capacity); 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

DEFAULT_SLO = ("p95 < 300ms", "error_rate < 1%")


def add_capacity(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``capacity`` sub-command."""
    from taskforge_perf.cli import _COUNT, _SECONDS

    p = sub.add_parser(
        "capacity",
        help="find the highest open-model rate at which the target holds an SLO",
        description="Raise the rate while the SLO holds, back off when it breaks (doubling, then "
        "bisection); each step is long enough to judge the SLO's percentile.",
    )
    p.add_argument("--base-url", required=True, help="the HTTP API, e.g. http://127.0.0.1:3000")
    p.add_argument("--timeout", type=_SECONDS, default=10.0, help="request timeout in seconds")
    p.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="EXPR",
        help="a threshold the target must hold, e.g. 'p95 < 300ms' (repeatable; default: "
        "'p95 < 300ms' and 'error_rate < 1%%')",
    )
    p.add_argument("--start", type=_SECONDS, default=50.0, help="first rate (req/s, default 50)")
    p.add_argument("--max", type=_SECONDS, default=5000.0, help="highest rate to try (default 5000)")
    p.add_argument("--step-s", type=_SECONDS, default=None, help="seconds per step (default: just enough)")
    p.add_argument("--precision", type=_SECONDS, default=0.05, help="stop bisecting within this fraction")
    p.add_argument("--users", type=_COUNT, default=20, help="test users (default 20)")
    p.add_argument("--email-prefix", default="loadtest", help="users are PREFIX{i}@DOMAIN")
    p.add_argument("--domain", default="example.com")
    p.add_argument(
        "--password-env",
        default="TASKFORGE_PERF_PASSWORD",
        help="environment variable holding the users' password (default: testpassword123)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the request generator")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the result as JSON")
    p.set_defaults(func=_cmd_capacity)


def _cmd_capacity(args: argparse.Namespace) -> int:
    from taskforge_perf.capacity import find_capacity
    from taskforge_perf.cli import _print_table
    from taskforge_perf.config import Target
    from taskforge_perf.engine.tester import LoadTester
    from taskforge_perf.mix import RequestMix
    from taskforge_perf.users import UserPool

    users = UserPool(
        args.users,
        email_prefix=args.email_prefix,
        domain=args.domain,
        password=os.environ.get(args.password_env) or "testpassword123",
    )
    target = Target(args.base_url, request_timeout=args.timeout)
    tester = LoadTester(target, users, RequestMix.taskforge(), seed=args.seed, live=False)
    slo = tuple(args.slo) or DEFAULT_SLO
    print(
        f"taskforge-perf: capacity of {tester.target.display_base_url} under {', '.join(slo)} ...",
        file=sys.stderr,
    )
    kw: dict[str, Any] = {"start": args.start, "max": args.max, "precision": args.precision}
    if args.step_s is not None:
        kw["step_s"] = args.step_s
    result = asyncio.run(find_capacity(tester, slo, **kw))
    _print_table(result.steps.drop("reason"))
    for row in result.steps.filter(result.steps["reason"].is_not_null()).iter_rows(named=True):
        print(f"  step {row['step']} ({row['rate']:g}/s) broke: {row['reason']}")
    print(repr(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.to_dict(), f, indent=2, default=str)
    if result.generator_limited:
        return 3
    return 0 if result.rate is not None else 1
