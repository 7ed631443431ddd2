"""The CI side of the command line: TOML files, --metrics-port, runs / show, exit code 3."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

import taskforge_perf as tfp
from tests.cli_process import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One short CLI run with the example TOML files against the reference target."""
    store = tmp_path_factory.mktemp("store")
    with tfp.ReferenceTarget(seed=41, hash_iterations=1000) as target:
        out = cli(
            "run",
            "--base-url",
            target.base_url,
            "--plan",
            str(EXAMPLES / "plan.toml"),
            "--mix",
            str(EXAMPLES / "mix.toml"),
            "--thresholds",
            str(EXAMPLES / "thresholds.toml"),
            "--users",
            "3",
            "--name",
            "toml",
            "--metrics-port",
            "0",
            "--quiet",
            "--save",
            str(store / "toml-run"),
        )
    return store, out


def test_cli_run_with_the_example_files_uses_the_same_objects(
    saved: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    store, out = saved
    assert out.returncode == 0, out.stderr
    assert "thresholds: PASSED" in out.stdout
    assert "live metrics on http://127.0.0.1:" in out.stderr
    run = tfp.load_run(store / "toml-run")
    # The CLI built exactly what the Python API builds from the same files.
    assert run.meta["plan"] == tfp.StressPlan.from_toml(EXAMPLES / "plan.toml").to_dict()
    assert run.meta["mix"] == tfp.RequestMix.from_toml(EXAMPLES / "mix.toml").to_dict()
    expected = [str(t) for t in tfp.Threshold.load_toml(EXAMPLES / "thresholds.toml")]
    assert [r["threshold"] for r in run.meta["thresholds"]] == expected
    assert set(run.load_events()["phase"].cast(str).unique()) == {"warmup", "peak", "spike", "cooldown"}
    assert run.target_metrics.height > 0 and run.meta["metrics_port"] > 0


def test_runs_lists_saved_runs_within_120_columns(
    saved: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    store, _ = saved
    tfp.load_run(EXAMPLES.parent / "data/samples/baseline").save(store / "baseline")
    out = cli("runs", str(store))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(map(len, lines)) <= 120
    assert lines[0].split() == [
        "run", "name", "started", "duration_s", "requests", "error_rate", "p95_ms", "passed"
    ]  # fmt: skip
    for folder in ("toml-run", "baseline"):
        run = tfp.load_run(store / folder)
        overall = run.overall().row(0, named=True)
        row = next(line for line in lines if line.startswith(folder + " "))
        cells = row.split()
        assert cells[1] == run.name and cells[-1] == "yes"
        assert cells[-2] == f"{overall['p95_ms']:.1f}" and cells[-4] == str(overall["count"])
    empty = cli("runs", str(store / "nothing-here"))
    assert empty.returncode == 0 and "no saved runs" in empty.stdout


def test_show_prints_summary_thresholds_and_assessment(
    saved: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    store, _ = saved
    out = cli("show", "toml-run", "--dir", str(store))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert max(map(len, text.splitlines())) <= 120
    run = tfp.load_run(store / "toml-run")
    for needle in ("Summary (per endpoint, ms):", "Thresholds:", "Assessment (per phase):", "passed: yes"):
        assert needle in text
    for t in run.meta["thresholds"]:
        assert t["threshold"] in text
    for phase in ("warmup", "peak", "spike", "cooldown"):
        assert f"\n{phase} " in text
    p95 = run.summary().filter(endpoint="POST /tasks generate-pdf")["p95_ms"][0]
    assert f"{p95:.1f}" in text
    missing = cli("show", "no-such-run", "--dir", str(store))
    assert missing.returncode == 2 and "no saved run 'no-such-run'" in missing.stderr


def test_unreachable_target_exits_3() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # held, never listening: refused, and no parallel test can take it
        port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        out = cli("run", "--base-url", url, "--duration", "1", "--rate", "1", "--no-save")
    assert out.returncode == 3, out.stderr
    assert "cannot reach the target" in out.stderr


def test_toml_flags_errors_exit_2(tmp_path: Path) -> None:
    out = cli("run", "--base-url", "http://127.0.0.1:9", "--plan", str(EXAMPLES / "plan.toml"), "--rate", "5")
    assert out.returncode == 2 and "--plan gives the load shape, so drop --rate" in out.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[phases]]\nname = "x"\nduration = 0\nrate = 1\n')
    out = cli("run", "--base-url", "http://127.0.0.1:9", "--plan", str(bad), "--no-save")
    assert out.returncode == 2
    assert f"{bad}, line 3, phases[0].duration:" in out.stderr


def test_no_user_can_log_in_exits_3() -> None:
    """Users that exist with another password: sign-up 409, login 401, nobody ready -> exit 3."""
    import os

    with tfp.ReferenceTarget(seed=42, hash_iterations=1000) as target:
        tfp.LoadTester(target, tfp.UserPool(count=2, email_prefix="pw", password="first-password")).run_sync(
            duration=0.2, concurrency=1
        )
        env = dict(os.environ, OTHER_PW="second-password")
        out = subprocess.run(
            [sys.executable, "-m", "taskforge_perf", "run", "--base-url", target.base_url, "--users", "2",
             "--email-prefix", "pw", "--password-env", "OTHER_PW", "--duration", "1", "--rate", "1",
             "--no-save", "--quiet"],
            capture_output=True, text=True, timeout=90, check=False, env=env,
        )  # fmt: skip
    assert out.returncode == 3, out.stderr
    assert "no user could sign up or log in" in out.stderr
