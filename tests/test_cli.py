"""The command line, as a user runs it (subprocesses against the real target on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

import taskforge_perf as tfp
from tests.cli_process import cli


@pytest.fixture(scope="module")
def target() -> tfp.ReferenceTarget:
    with tfp.ReferenceTarget(seed=31, hash_iterations=1000) as t:
        yield t


def test_run_saves_and_passes_thresholds(target: tfp.ReferenceTarget, tmp_path: Path) -> None:
    out = cli(
        "run",
        "--base-url",
        target.base_url,
        "--duration",
        "1",
        "--concurrency",
        "4",
        "--users",
        "3",
        "--quiet",
        "--save",
        str(tmp_path / "r"),
        "--threshold",
        "error_rate < 1%",
    )
    assert out.returncode == 0, out.stderr
    assert "POST /tasks generate-pdf" in out.stdout and "thresholds: PASSED" in out.stdout
    run = tfp.load_run(tmp_path / "r")
    assert run.meta["stopped"] == "completed" and run.events.height > 10


def test_failed_threshold_gives_exit_code_1(target: tfp.ReferenceTarget) -> None:
    out = cli(
        "run",
        "--base-url",
        target.base_url,
        "--duration",
        "1",
        "--concurrency",
        "2",
        "--users",
        "2",
        "--quiet",
        "--no-save",
        "--threshold",
        "p99 < 0.001ms",
    )
    assert out.returncode == 1, out.stderr
    assert "thresholds: FAILED" in out.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["run", "--base-url", "localhost:3000", "--duration", "1", "--concurrency", "1"],
            "Target.base_url must start with http://",
        ),
        (
            ["run", "--base-url", "http://127.0.0.1:9", "--duration", "1"],
            "--concurrency N or --rate R",
        ),
        (["run", "--base-url", "http://127.0.0.1:9", "--preset", "nope"], "nope"),
        (
            [
                "run",
                "--base-url",
                "http://127.0.0.1:9",
                "--duration",
                "1",
                "--concurrency",
                "1",
                "--threshold",
                "p95 <",
            ],
            "threshold",
        ),
        (
            [
                "run",
                "--base-url",
                "http://127.0.0.1:9",
                "--duration",
                "1",
                "--concurrency",
                "1",
                "--quiet",
            ],
            "cannot reach the target",
        ),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], needle: str) -> None:
    out = cli(*args)
    # 3: the target is unusable at set-up (issue 15's exit codes); 2: usage or configuration.
    assert out.returncode == (3 if needle == "cannot reach the target" else 2), (out.stdout, out.stderr)
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
