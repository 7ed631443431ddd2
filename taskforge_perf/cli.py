"""Command line: thin wrappers that parse arguments and call the public API."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

Runner = Callable[[argparse.Namespace], int]


def _add_target(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from taskforge_perf.target.cli import add_arguments, run

    p = sub.add_parser("target", help="run the reference TaskForge target (HTTP API + status gateway)")
    add_arguments(p)
    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    """The ``taskforge-perf`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="taskforge-perf",
        description="Load-test TaskForge-style systems and analyse the results.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_target(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Runner | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return func(args)
