"""Command line: thin wrappers that parse arguments and call the public API."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from taskforge_perf.cli_ci import add_ci_options, add_runs, add_show, announce_metrics, check_ci_flags

Runner = Callable[[argparse.Namespace], int]


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM while a load runs (the signal number decides the exit code, 128 + n)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    """SIGINT and SIGTERM become ``Interrupted`` in the main thread while installed.

    The first one stops the run (sockets closed, users logged out, partial run saved); a second one
    leaves at once (rows already written to the run folder are kept). Exit code 130 / 143.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        raise Interrupted(signum)

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    @property
    def exit_code(self) -> int | None:
        """128 + the first signal received, or None."""
        return 128 + self.received[0] if self.received else None


def _number(kind: type, lo: float, *, strict: bool = False) -> Callable[[str], Any]:
    """An argparse type: a finite int/float >= lo (> lo when strict), else a one-line error."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or (value <= lo if strict else value < lo):
            what = "an integer" if kind is int else "a finite number"
            raise argparse.ArgumentTypeError(
                f"must be {what} {'>' if strict else '>='} {lo:g} (got {text!r})"
            )
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


_SECONDS = _number(float, 0, strict=True)
_NONNEG = _number(float, 0)
_COUNT = _number(int, 1)
_NONNEG_INT = _number(int, 0)


def _add_target(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from taskforge_perf.target.cli import add_arguments, run

    p = sub.add_parser("target", help="run the reference TaskForge target (HTTP API + status gateway)")
    add_arguments(p)
    p.set_defaults(func=run)


def _add_load_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("load")
    g.add_argument("--duration", type=_SECONDS, default=None, help="seconds of load (one phase)")
    g.add_argument("--concurrency", type=_NONNEG_INT, default=None, help="virtual users (closed model)")
    g.add_argument("--rate", type=_NONNEG, default=None, help="requests per second (open model)")
    g.add_argument("--preset", default=None, help="a StressPlan preset: dev, staging, production, stress")
    g.add_argument("--think-time", type=_NONNEG, default=None, help="seconds between a user's requests")
    g.add_argument(
        "--websockets",
        type=_NONNEG_INT,
        default=None,
        metavar="N",
        help="WebSocket connections to the status gateway (needs --ws-url; demo: 50)",
    )
    g.add_argument("--users", type=_COUNT, default=20, help="test users to sign up / log in (default 20)")
    g.add_argument("--email-prefix", default="loadtest", help="users are PREFIX{i}@DOMAIN")
    g.add_argument("--domain", default="example.com")
    g.add_argument(
        "--password-env",
        default="TASKFORGE_PERF_PASSWORD",
        help="environment variable holding the users' password (default: testpassword123)",
    )
    g.add_argument("--max-in-flight", type=_COUNT, default=1000, help="open model: in-flight cap")
    g.add_argument("--seed", type=int, default=None, help="seed of the request generator")
    g.add_argument("--processes", type=_COUNT, default=1, help="worker processes (each its own loop)")
    g.add_argument("--dask", default=None, metavar="ADDR", help="a Dask scheduler, e.g. tcp://host:8786")
    g.add_argument("--name", default="run", help="the run's name (used in the saved folder)")
    g.add_argument(
        "--save",
        default=None,
        metavar="DIR",
        help="folder to save the run to (default data/runs/<run-id>)",
    )
    g.add_argument("--no-save", action="store_true", help="do not save the run")
    g.add_argument("--quiet", action="store_true", help="no progress line")
    g.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="EXPR",
        help="pass/fail check, e.g. 'p95(POST /tasks) < 300ms', 'error_rate < 1%%', "
        "'task_latency.p99 < 5s'; repeatable; the exit code is 1 when one fails",
    )
    g.add_argument(
        "--abort-on-fail",
        action="store_true",
        help="stop the run within a second of a threshold breach",
    )


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a load against a target and print the summary")
    p.add_argument("--base-url", required=True, help="the HTTP API, e.g. http://127.0.0.1:3000")
    p.add_argument("--ws-url", default=None, help="the status gateway, e.g. ws://127.0.0.1:4000")
    p.add_argument("--timeout", type=_SECONDS, default=10.0, help="request timeout in seconds")
    p.add_argument(
        "--report",
        dest="html_report",
        action="store_true",
        help="also write a self-contained HTML report next to the saved run",
    )
    _add_load_options(p)
    add_ci_options(p, target_metrics=True)
    p.set_defaults(func=_cmd_run)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="start the reference target, run a short load, save and summarise")
    _add_load_options(p)
    add_ci_options(p)
    p.add_argument(
        "--no-report",
        dest="html_report",
        action="store_false",
        help="do not write the HTML report next to the saved run",
    )
    # An open-model load the reference target's simulated workers keep up with, so the demo shows
    # tasks completing end to end (raise --rate, or use --concurrency, to watch queueing grow).
    p.set_defaults(duration=20.0, rate=100.0, name="demo", seed=7, func=_cmd_demo, html_report=True)


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a saved run")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a saved run folder (run.save() / run --save)")
    p.add_argument(
        "--compare",
        default=None,
        metavar="OTHER_RUN",
        help="a baseline run folder to compare RUN_DIR with (adds table, charts, verdict)",
    )
    p.add_argument("-o", "--output", default="report.html", help="the HTML file (default report.html)")
    p.add_argument("--title", default=None, help="the report's title")
    p.add_argument(
        "--max-p95-regression",
        type=_NONNEG,
        default=0.10,
        help="the verdict's allowed p95 regression with --compare (default 0.10 = 10%%)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from taskforge_perf.report import report

    report(
        args.run_dir,
        args.compare,
        args.output,
        title=args.title,
        max_p95_regression=args.max_p95_regression,
        progress=not args.quiet,
    )
    if args.compare:  # the one verdict, as the report shows it
        from taskforge_perf.compare import compare

        print(compare(args.compare, args.run_dir, max_regression=args.max_p95_regression).verdict)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``taskforge-perf`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="taskforge-perf",
        description="Load-test TaskForge-style systems and analyse the results.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(sub)
    _add_run(sub)
    _add_report(sub)
    _add_target(sub)
    add_runs(sub)
    add_show(sub)
    from taskforge_perf.cli_capacity import add_capacity
    from taskforge_perf.cli_compare import add_compare

    add_capacity(sub)
    add_compare(sub)
    return parser


def _plan(args: argparse.Namespace) -> Any:
    from taskforge_perf.errors import ConfigError
    from taskforge_perf.plan import Phase, StressPlan

    if args.plan:
        return StressPlan.from_toml(args.plan)
    if args.preset:
        if args.duration is not None and args.concurrency is None and args.rate is None:
            raise ConfigError("--preset sets the duration; drop --duration or drop --preset")
        return StressPlan.preset(args.preset)
    if args.duration is None or (args.concurrency is None and args.rate is None):
        raise ConfigError("give --preset NAME, or --duration S with --concurrency N or --rate R")
    return StressPlan(
        [
            Phase(
                "load",
                args.duration,
                rate=args.rate,
                concurrency=args.concurrency,
                think_time=args.think_time or 0.0,
            )
        ]
    )


def _dask_runner(address: str | None) -> Any:
    """``--dask ADDR``: a DaskRunner on that scheduler's workers (needs the ``distributed`` extra)."""
    if address is None:
        return None
    from taskforge_perf.errors import ConfigError

    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--dask needs Dask: pip install 'taskforge-perf[distributed]'") from None
    from taskforge_perf.engine.dask_runner import DaskRunner

    return DaskRunner(Client(address, timeout=10))


def _load(args: argparse.Namespace, target: Any) -> int:
    from taskforge_perf.engine.tester import LoadTester
    from taskforge_perf.live import TerminalProgress
    from taskforge_perf.mix import RequestMix
    from taskforge_perf.users import UserPool

    plan = _plan(args)
    users = UserPool(
        args.users,
        email_prefix=args.email_prefix,
        domain=args.domain,
        password=os.environ.get(args.password_env) or "testpassword123",
    )
    progress = [] if args.quiet else [TerminalProgress()]
    kwargs: dict[str, Any] = {"save_dir": None} if args.no_save else {}
    mix = RequestMix.from_toml(args.mix) if args.mix else RequestMix.taskforge()
    from taskforge_perf.thresholds import Threshold

    checks = [Threshold.parse(t, abort_on_fail=args.abort_on_fail) for t in args.threshold]
    checks += Threshold.load_toml(args.thresholds) if args.thresholds else []
    tester = LoadTester(
        target,
        users,
        mix,
        seed=args.seed,
        max_in_flight=args.max_in_flight,
        listeners=progress,
        websockets=args.websockets or 0,
        metrics_port=args.metrics_port,
        processes=args.processes,
        runner=_dask_runner(args.dask),
        **kwargs,
    )
    if args.metrics_port is not None:
        tester.listeners.append(announce_metrics(tester))
    print(
        f"taskforge-perf: {plan.duration:.0f} s of load on {tester.target.display_base_url} "
        f"with {len(users)} users ...",
        file=sys.stderr,
    )
    with _Signals() as signals:
        try:
            run = tester.run_sync(
                plan, name=args.name, thresholds=checks, save_to=None if args.no_save else args.save
            )
        except Interrupted:  # a second signal: leave now; the run folder keeps the flushed rows
            print(
                "taskforge-perf: left the run unfinished; the rows already written stay in its folder "
                "(tfp.load_run reads it)",
                file=sys.stderr,
            )
            # The run's loop thread is still going: finalising the interpreter under it can crash
            # (SIGSEGV in a library's C code), so the command leaves here, its output flushed.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(signals.exit_code or 130)
        for p in progress:
            p.close()
        code = _report(args, run, checks)
        return signals.exit_code or code


def _report(args: argparse.Namespace, run: Any, checks: list[Any]) -> int:
    """Print the summary, save the run (already streamed unless --no-save), write the HTML report."""
    from taskforge_perf.analysis import HEADLINE_COLUMNS

    summary = run.summary()
    _print_table(summary.select([c for c in HEADLINE_COLUMNS if c in summary.columns]))
    c = run.meta["counters"]
    head = run.headline()  # load errors only; not-sent rows and setup/teardown auth outcomes apart
    print(
        f"{head[0]}, {c['tasks_created']} tasks created, {c['refreshes']} token refreshes, "
        f"run {run.meta['stopped']}"
    )
    for line in head[1:]:
        print(line)
    if run.generator_warning():
        print(textwrap.fill(run.generator_warning(), 120, break_on_hyphens=False))
    if run.ws_events.height:
        print("WebSocket status gateway:")
        _print_table(run.ws_summary(), precision=1)
        print("Task end-to-end latency (created -> status, ms):")
        _print_table(run.task_latency(), precision=1)
    if checks:
        _print_table(run.thresholds().select("threshold", "scope", "actual", "passed"))
        print("thresholds: " + ("PASSED" if run.meta.get("passed") else "FAILED"))
    from taskforge_perf.run_text import finding_lines

    for line in finding_lines(run):  # capacity beside pass/fail: "finding: capacity reached at ..."
        print(line)
    if not args.no_save:
        path = run.save(args.save)
        print(f"saved the run to {path}/\n  (load it with tfp.load_run({str(path)!r}))")
        if run.meta.get("stopped") == "interrupted":
            print("the run was interrupted: no HTML report (taskforge-perf report RUN_DIR writes one)")
        elif getattr(args, "html_report", False):
            from taskforge_perf.report import report

            html = report(path, output=path / "report.html", progress=not args.quiet)
            print(f"HTML report: {html} (self-contained, opens offline)")
    return 0 if run.passed else 1


def _print_table(frame: Any, precision: int = 2) -> None:
    """Print a frame as a plain table within 120 columns (a wide one-row frame vertically)."""
    from taskforge_perf.run_text import fit_table

    print(fit_table(frame, precision=precision))


def _cmd_run(args: argparse.Namespace) -> int:
    from taskforge_perf.config import Target

    target = Target(args.base_url, args.ws_url, request_timeout=args.timeout, metrics_url=args.metrics_url)
    return _load(args, target)


def _cmd_demo(args: argparse.Namespace) -> int:
    from taskforge_perf.target import ReferenceTarget

    print("taskforge-perf demo: starting the reference TaskForge target ...", file=sys.stderr)
    if args.websockets is None:
        args.websockets = 50
    with ReferenceTarget(seed=args.seed or 0, worker_concurrency=32) as target:
        print(f"target up: {target.base_url} (status gateway {target.ws_url})", file=sys.stderr)
        return _load(args, target)


def _check_conflicts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags that cannot go together end the command (exit 2) with a message, never silently."""
    if args.command not in ("run", "demo"):
        return
    demo = args.command == "demo"
    if args.preset:
        # The demo's own defaults (duration, rate) give way to a preset; explicit flags never do.
        given = [
            flag
            for flag, value, default in (
                ("--rate", args.rate, 100.0 if demo else None),
                ("--concurrency", args.concurrency, None),
                ("--think-time", args.think_time, None),
            )
            if value is not None and value != default
        ]
        if given:
            parser.error(
                f"--preset sets the load shape, so {', '.join(given)} would be ignored; "
                "drop them, or drop --preset and give --duration with --rate or --concurrency"
            )
        if demo:
            args.rate = None
            if args.duration == 20.0:
                args.duration = None
    if args.rate is not None and args.concurrency is not None and not (demo and args.rate == 100.0):
        parser.error("--rate (open model) and --concurrency (closed model) exclude each other; give one")
    if demo and args.concurrency is not None and args.rate == 100.0:
        args.rate = None  # the demo's default rate gives way to an explicit --concurrency
    if args.think_time and args.concurrency is None:
        parser.error("--think-time applies to the closed model only: add --concurrency N (or drop it)")
    if args.no_save and args.save is not None:
        parser.error("--save DIR and --no-save exclude each other; give one")
    if args.no_save and getattr(args, "html_report", False) and not demo:
        parser.error("--report writes next to the saved run, so it needs the run saved: drop --no-save")
    if args.abort_on_fail and not args.threshold:
        parser.error("--abort-on-fail needs at least one --threshold EXPR to watch")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    from taskforge_perf.errors import TargetError, TaskforgePerfError

    parser = build_parser()
    args = parser.parse_args(argv)
    func: Runner | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    _check_conflicts(parser, args)
    check_ci_flags(parser, args)
    try:
        return func(args)
    except TargetError as exc:  # unreachable at set-up, or no user could log in: exit 3
        from taskforge_perf.redact import redact_text

        print(f"taskforge-perf: error: {redact_text(str(exc))}", file=sys.stderr)
        return 3
    except TaskforgePerfError as exc:
        from taskforge_perf.redact import redact_text

        print(f"taskforge-perf: error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130
