"""Exit codes of the commands not covered elsewhere (issue 15, item 4; the table is in the README).

Covered in other files: ``run`` 0/1/2/3 (test_cli.py, test_cli_args.py, test_cli_runs.py), 130/143
(test_cli_signals.py), ``runs``/``show`` 0/2 (test_cli_runs.py), ``capacity`` 0 (test_capacity.py),
``report`` 0 (test_report.py), ``compare`` 0/1/2/4 (test_cli_compare.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import taskforge_perf as tfp
from taskforge_perf.cli import main
from tests.cli_process import cli


def test_no_command_is_a_usage_error() -> None:
    out = cli()
    assert out.returncode == 2 and "COMMAND" in out.stdout


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("threshold", "code"), [("error_rate < 50%", 0), ("p95 < 0.001ms", 1)])
def test_demo_exits_0_when_thresholds_pass_and_1_when_one_fails(threshold: str, code: int) -> None:
    out = cli(
        "demo",
        "--duration",
        "1",
        "--rate",
        "20",
        "--users",
        "2",
        "--websockets",
        "0",
        "--no-save",
        "--quiet",
        "--threshold",
        threshold,
    )
    assert out.returncode == code, out.stderr
    assert ("thresholds: PASSED" if code == 0 else "thresholds: FAILED") in out.stdout


def test_report_of_a_folder_that_is_no_run_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is not a saved run" in err and len(err.strip().splitlines()) == 1


def test_capacity_bad_slo_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capacity", "--base-url", "http://127.0.0.1:9", "--slo", "p95 <"]) == 2
    assert "cannot parse threshold" in capsys.readouterr().err


def test_capacity_unreachable_target_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["capacity", "--base-url", "http://127.0.0.1:9", "--users", "1", "--start", "10", "--max", "10"]
    )
    assert code == 3
    assert "cannot reach the target" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_capacity_exits_1_when_no_rate_holds(capsys: pytest.CaptureFixture[str]) -> None:
    """An SLO nothing can hold (error rate below 0%): four steps down, none held, exit 1."""
    with tfp.ReferenceTarget(seed=1, hash_iterations=1000) as target:
        code = main(
            [
                "capacity",
                "--base-url",
                target.base_url,
                "--slo",
                "error_rate < 0%",
                "--start",
                "20",
                "--max",
                "20",
                "--step-s",
                "1",
                "--users",
                "2",
            ]
        )
    assert code == 1
    assert "no rate held the SLO" in capsys.readouterr().out
