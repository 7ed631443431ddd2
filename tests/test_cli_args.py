"""CLI flag checks: bad numbers and conflicting flags end the command (exit 2) with a message,
before any traffic (no target is started: the base URL is never contacted)."""

from __future__ import annotations

from urllib.parse import urlunsplit

import pytest

from taskforge_perf.cli import main

RUN = ["run", "--base-url", "http://127.0.0.1:9"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (RUN + ["--preset", "dev", "--rate", "5"], "--preset sets the load shape, so --rate"),
        (RUN + ["--preset", "dev", "--concurrency", "5"], "so --concurrency would be ignored"),
        (RUN + ["--preset", "dev", "--think-time", "1"], "so --think-time would be ignored"),
        (["demo", "--preset", "dev", "--rate", "50"], "so --rate would be ignored"),
        (
            RUN + ["--timeout", "inf", "--duration", "1", "--rate", "1"],
            "--timeout: must be a finite number > 0",
        ),
        (
            RUN + ["--timeout", "0", "--duration", "1", "--rate", "1"],
            "--timeout: must be a finite number > 0",
        ),
        (RUN + ["--duration", "nan", "--rate", "1"], "--duration: must be a finite number > 0"),
        (RUN + ["--duration", "1", "--rate", "-1"], "--rate: must be a finite number >= 0"),
        (RUN + ["--duration", "1", "--rate", "1", "--users", "0"], "--users: must be an integer >= 1"),
        (RUN + ["--duration", "1", "--concurrency", "x"], "--concurrency: must be an integer >= 0"),
        (RUN + ["--duration", "1", "--rate", "1", "--websockets", "-2"], "--websockets: must be an integer"),
        (RUN + ["--duration", "1", "--rate", "1", "--max-in-flight", "0"], "--max-in-flight: must be"),
        (RUN + ["--duration", "1", "--rate", "1", "--concurrency", "2"], "exclude each other"),
        (RUN + ["--duration", "1", "--rate", "1", "--think-time", "1"], "--think-time applies to the closed"),
        (RUN + ["--duration", "1", "--rate", "1", "--no-save", "--save", "x"], "--save DIR and --no-save"),
        (RUN + ["--duration", "1", "--rate", "1", "--no-save", "--report"], "--report writes next to the"),
        (RUN + ["--duration", "1", "--rate", "1", "--abort-on-fail"], "--abort-on-fail needs at least one"),
        (["report", "x", "--max-p95-regression", "-0.1"], "--max-p95-regression: must be a finite"),
    ],
)
def test_bad_flags_exit_2_with_a_message(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            [
                "run",
                "--base-url",
                urlunsplit(("http", "u:hunter2@127.0.0.1:9", "", "", "")),
                "--duration",
                "1",
                "--rate",
                "1",
            ],
            "***@",
        ),
        (["run", "--base-url", "http://127.0.0.1:9/?x=1", "--duration", "1", "--rate", "1"], "query"),
        (RUN + ["--duration", "1", "--rate", "1", "--threshold", "error_rate < 1"], "ambiguous"),
    ],
)
def test_config_errors_are_one_redacted_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "hunter2" not in err and "Traceback" not in err


def test_demo_defaults_give_way_to_explicit_shape() -> None:
    from taskforge_perf.cli import _check_conflicts, _plan, build_parser

    parser = build_parser()
    args = parser.parse_args(["demo", "--concurrency", "5"])
    _check_conflicts(parser, args)
    assert args.rate is None and _plan(args).phases[0].concurrency == 5
    args = parser.parse_args(["demo", "--preset", "dev"])
    _check_conflicts(parser, args)
    assert _plan(args) == __import__("taskforge_perf").StressPlan.preset("dev")
    args = parser.parse_args(["demo"])
    _check_conflicts(parser, args)
    assert _plan(args).phases[0].rate == 100.0 and _plan(args).duration == 20.0
