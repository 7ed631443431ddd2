"""``taskforge-perf compare``: golden outputs on the committed sample runs, json = the library's verdict,
and the exit codes (0 passed, 1 failed, 0 + warning or 4 inconclusive, 2 usage error).

The golden files in tests/golden/ were generated once from the CLI and are compared exactly; after an
intended change of the format regenerate them with ``TFP_UPDATE_GOLDEN=1 pytest tests/test_cli_compare.py``
and review the diff.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import taskforge_perf as tfp
from taskforge_perf.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"
GOLDEN = Path(__file__).resolve().parent / "golden"
BASE = [str(SAMPLES / n) for n in ("baseline", "baseline-2", "baseline-3")]
CAND = [str(SAMPLES / n) for n in ("candidate", "candidate-2", "candidate-3")]
GATE = ["--max-regression", "p95=10%", "--max-regression", "error_rate=0.5pp"]
THREE = ["--base", *BASE, "--cand", *CAND, *GATE]  # fails: the three POST /tasks endpoints regress
ONE = [BASE[0], BASE[0]]  # a run against itself: inconclusive (GET /health, /metrics too few for p95)
# the same three runs on both sides with a p50 gate: every test within its threshold
PASSING = [
    "--base",
    *BASE,
    "--cand",
    *BASE,
    "--max-regression",
    "p50=20%",
    "--max-regression",
    "error_rate=2pp",
]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["compare", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("TFP_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file (TFP_UPDATE_GOLDEN=1 regenerates)"


@pytest.mark.parametrize(
    ("args", "fmt", "golden", "code"),
    [
        (THREE, "markdown", "compare_3v3.md", 1),
        (THREE, "text", "compare_3v3.txt", 1),
        (ONE, "markdown", "compare_1v1.md", 0),
        (ONE, "text", "compare_1v1.txt", 0),
        (PASSING, "markdown", "compare_pass.md", 0),
    ],
)
def test_output_matches_the_golden_file(
    args: list[str], fmt: str, golden: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    got, out, _ = run_main([*args, "--format", fmt], capsys)
    assert got == code
    check_golden(golden, out)
    assert str(SAMPLES) not in out  # no machine-specific paths: the output is the same everywhere
    if fmt == "text":
        assert max(len(line) for line in out.splitlines()) <= 120


def test_markdown_is_a_pull_request_table(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_main([*THREE, "--format", "markdown"], capsys)
    lines = out.splitlines()
    assert lines[0] == "**FAIL: a significant regression in 3 of 5 endpoints**"  # the verdict line first
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 5  # header, alignment, one row per endpoint
    assert all(line.count(" | ") == table[0].count(" | ") for line in table[2:])  # no stray pipes
    failed = [line.split(" | ")[0].lstrip("| ") for line in table[2:] if line.endswith("**failed** |")]
    assert failed == ["POST /tasks compress-video", "POST /tasks generate-pdf", "POST /tasks resize-image"]


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


@pytest.mark.parametrize("args", [THREE, ONE, PASSING], ids=["failed", "inconclusive", "passed"])
def test_json_is_the_library_verdict(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_main([*args, "--format", "json"], capsys)
    doc = json.loads(out)
    if args is THREE:
        lib = tfp.compare(BASE, CAND, max_regression=0.10, max_error_rate_increase=0.005)
    elif args is ONE:
        lib = tfp.compare(BASE[0], BASE[0])
    else:
        lib = tfp.compare(BASE, BASE, gate_metric="p50", max_regression=0.20, max_error_rate_increase=0.02)
    v = lib.verdict
    assert doc["verdict"]["status"] == v.status
    assert (doc["verdict"]["passed"], doc["verdict"]["failed"], doc["verdict"]["inconclusive"]) == (
        v.passed,
        v.failed,
        v.inconclusive,
    )
    assert doc["verdict"]["reasons"] == list(v.reasons)
    assert doc["verdict"]["tests"] == _clean(v.tests.to_dicts())
    assert doc["rows"] == _clean(lib.table().to_dicts())
    assert doc["warnings"] == list(lib.warnings)
    assert doc["gate"]["metric"] == v.gate.metric
    assert doc["gate"]["max_error_rate_increase"] == v.gate.max_error_rate_increase


def test_max_regression_maps_onto_compare(capsys: pytest.CaptureFixture[str]) -> None:
    """p95=10% -> max_regression=0.10; error_rate=0.5pp -> max_error_rate_increase=0.005 (absolute)."""
    _, out, _ = run_main([*THREE, "--format", "json", "--alpha", "0.01"], capsys)
    gate = json.loads(out)["gate"]
    assert gate == {"metric": "p95", "max_regression": 0.10, "max_error_rate_increase": 0.005, "alpha": 0.01}
    # A looser limit changes the library's decision: +60% (CI up to +87%) is within +100%.
    code, out, err = run_main(["--base", *BASE, "--cand", *CAND, "--max-regression", "p95=100%"], capsys)
    assert code == 0 and out.startswith("INCONCLUSIVE") and "inconclusive" in err
    # The gated percentile follows --max-regression when --gate-metric is not given.
    _, out, _ = run_main(
        ["--base", *BASE, "--cand", *CAND, "--max-regression", "p50=20%", "--format", "json"], capsys
    )
    assert json.loads(out)["gate"]["metric"] == "p50"


def test_exit_codes_passed_failed_inconclusive(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(PASSING, capsys)[0] == 0
    assert run_main(THREE, capsys)[0] == 1
    code, out, err = run_main(ONE, capsys)
    assert code == 0 and out.startswith("INCONCLUSIVE")
    assert "warning: the comparison is inconclusive" in err
    assert run_main([*ONE, "--fail-on-inconclusive"], capsys)[0] == 4
    assert run_main([*PASSING, "--fail-on-inconclusive"], capsys)[0] == 0
    assert run_main([*THREE, "--fail-on-inconclusive"], capsys)[0] == 1


def test_runs_by_name_under_dir(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["baseline", "candidate", "--dir", str(SAMPLES), "--format", "json"], capsys)
    assert code == 1  # one run per side already fails the POST /tasks endpoints
    assert json.loads(out)["runs"] == {"baseline": ["baseline-1"], "candidate": ["candidate-1"]}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([*ONE, "--max-regression", "p95=10"], "write p95=10%"),
        ([*ONE, "--max-regression", "error_rate=0.5%"], "write error_rate=0.5pp"),
        ([*ONE, "--max-regression", "p42=10%"], "the gate does not know 'p42'"),
        ([*ONE, "--max-regression", "throughput=10%"], "the gate does not know 'throughput'"),
        ([*ONE, "--max-regression", "p95"], "is not METRIC=LIMIT"),
        ([*ONE, "--alpha", "0.7"], "--alpha"),
        ([*ONE, "--gate-metric", "p42"], "--gate-metric"),
        ([*ONE, "--format", "html"], "--format"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["compare", *args])
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([BASE[0], str(SAMPLES / "no-such-run")], "no saved run"),
        ([BASE[0]], "BASE CAND takes exactly two runs"),
        ([*ONE, "--base", BASE[1]], "not both"),
        (["--base", BASE[0]], "both sides"),
        ([*ONE, "--max-regression", "p95=10%", "--max-regression", "p99=10%"], "one latency percentile"),
        ([*ONE, "--max-regression", "p95=10%", "--gate-metric", "p99"], "--gate-metric p99"),
        ([*ONE, "--max-regression", "p95=10%", "--max-regression", "p95=5%"], "given twice"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(args, capsys)
    assert code == 2 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_console_command_exits_1_on_a_regression() -> None:
    """The real process: docs/ci.md's step relies on its exit status."""
    out = subprocess.run(
        [sys.executable, "-m", "taskforge_perf", "compare", *THREE, "--format", "markdown"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 1, out.stderr
    assert out.stdout == (GOLDEN / "compare_3v3.md").read_text()


def test_the_command_in_docs_ci_works(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/ci.md's compare step, with the sample runs as baseline and candidate."""
    import re
    import shlex

    doc = (ROOT / "docs" / "ci.md").read_text()
    step = re.search(r"taskforge-perf compare (perf/baseline .*?)> perf-out/compare\.md", doc, re.S)
    assert step is not None
    args = shlex.split(step.group(1).replace("\\\n", " "))
    assert args[:2] == ["perf/baseline", "perf-out/candidate"]
    code, out, _ = run_main([BASE[0], CAND[0], *args[2:]], capsys)
    assert code == 1  # the sample candidate regresses the POST /tasks endpoints
    assert out.startswith("**FAIL: ") and "| endpoint | p95 base (ms) |" in out
