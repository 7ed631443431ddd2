"""The CI side of the command line (issue 15): TOML files, Prometheus, saved runs.

Thin like the rest of the CLI: flags for ``run``/``demo`` (``--plan``, ``--mix``, ``--thresholds``,
``--metrics-port``, ``--metrics-url``) and the ``runs`` / ``show`` sub-commands, all of which call
the public API (``StressPlan.from_toml``, ``runs()``, ``load_run``, ``Run.summary`` ...).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def _port(text: str) -> int:
    """An argparse type: a TCP port 0..65535 (0: a free one)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port 0..65535, 0 for a free one (got {text!r})")
    return value


def add_ci_options(p: argparse.ArgumentParser, *, target_metrics: bool = False) -> None:
    """--plan/--mix/--thresholds TOML files and --metrics-port (run: also --metrics-url)."""
    g = p.add_argument_group("files and metrics")
    g.add_argument(
        "--plan", metavar="PLAN.toml", help="a StressPlan as TOML (instead of --preset/--duration)"
    )
    g.add_argument("--mix", metavar="MIX.toml", help="a RequestMix as TOML (default: the TaskForge mix)")
    g.add_argument(
        "--thresholds",
        metavar="THRESHOLDS.toml",
        help="pass/fail checks as TOML (added to any --threshold); the exit code is 1 when one fails",
    )
    g.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="P",
        help="serve live load metrics for Prometheus on 127.0.0.1:P/metrics during the run (0: a free port)",
    )
    if target_metrics:
        g.add_argument(
            "--metrics-url",
            default="auto",
            metavar="URL",
            help="the target's own Prometheus metrics, scraped into the run (default BASE_URL/metrics)",
        )
        g.add_argument(
            "--no-target-metrics",
            dest="metrics_url",
            action="store_const",
            const=None,
            help="do not scrape the target's metrics",
        )


def check_ci_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--plan replaces the load-shape flags (the demo's own defaults give way to it)."""
    if args.command not in ("run", "demo") or not args.plan:
        return
    if args.command == "demo":
        args.duration = None if args.duration == 20.0 else args.duration
        args.rate = None if args.rate == 100.0 else args.rate
    given = [
        flag
        for flag, value in (
            ("--preset", args.preset),
            ("--duration", args.duration),
            ("--rate", args.rate),
            ("--concurrency", args.concurrency),
            ("--think-time", args.think_time),
        )
        if value is not None
    ]
    if given:
        parser.error(f"--plan gives the load shape, so drop {', '.join(given)} (or drop --plan)")


def add_runs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("runs", help="list saved runs: name, start, duration, requests, errors, p95, passed")
    p.add_argument(
        "dir", nargs="?", default="data/runs", metavar="DIR", help="the run store (default data/runs)"
    )
    p.set_defaults(func=_cmd_runs)


def add_show(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("show", help="print a saved run's summary, thresholds and assessment")
    p.add_argument("run", metavar="RUN", help="a run folder, or a run's folder name under --dir")
    p.add_argument("--dir", default="data/runs", help="where to look up RUN by name (default data/runs)")
    p.set_defaults(func=_cmd_show)


def _cmd_runs(args: argparse.Namespace) -> int:
    from taskforge_perf.run_text import runs_text

    print(runs_text(args.dir))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from taskforge_perf.results import load_run
    from taskforge_perf.run_text import resolve_run, show_text

    print(show_text(load_run(resolve_run(args.run, args.dir))))
    return 0


def announce_metrics(tester: Any) -> Callable[[Any], None]:
    """A listener that prints where the live metrics are served, once."""
    said: list[bool] = []

    def announce(_snapshot: Any) -> None:
        if not said and tester.metrics_endpoint:
            said.append(True)
            print(f"taskforge-perf: live metrics on {tester.metrics_endpoint}", file=sys.stderr)

    return announce
