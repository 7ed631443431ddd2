"""Ctrl-C, SIGTERM and SIGKILL sent for real to a CLI subprocess loading a reference target.

Each test waits for observable state (the run folder's meta.json saying the load started, part
files on disk, the target's /metrics, a line on stderr) before it signals; nothing sleeps to
synchronise.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.store import part_paths

USERS = 3


@pytest.fixture(scope="module")
def target() -> Iterator[tfp.ReferenceTarget]:
    with tfp.ReferenceTarget(seed=41, hash_iterations=1000) as t:
        yield t


class Cli:
    """``taskforge-perf run`` in a subprocess; stderr lines collected by a reader thread."""

    def __init__(self, target: tfp.ReferenceTarget, folder: Path, *extra: str) -> None:
        self.folder = folder
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskforge_perf",
                "run",
                "--base-url",
                target.base_url,
                "--duration",
                "120",
                "--concurrency",
                "4",
                "--users",
                str(USERS),
                "--quiet",
                "--save",
                str(folder),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def wait_line(self, needle: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if needle in line:
                return line
        raise AssertionError(f"no stderr line with {needle!r}: {''.join(self.stderr)}")

    def wait_for(self, what: str, ok: Callable[[], bool], timeout: float = 60) -> None:
        """Poll observable state (files, /metrics) until ``ok()``; fail if the CLI exits first."""
        deadline = time.monotonic() + timeout
        while not ok():
            assert self.proc.poll() is None, f"the CLI exited early: {''.join(self.stderr)}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def load_started(self) -> bool:
        try:
            meta = json.loads((self.folder / "meta.json").read_text())
        except (OSError, ValueError):
            return False
        return meta.get("load_start_ns") is not None

    def rows_on_disk(self) -> bool:
        return any(pl.read_parquet(p).height for p in part_paths(self.folder, "events"))

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out


def logouts(target: tfp.ReferenceTarget) -> float:
    return target.requests_total().get(("POST /auth/logout", "200"), 0.0)


def tasks_created(target: tfp.ReferenceTarget) -> float:
    return sum(target.metrics().get("taskforge_tasks_created_total", {}).values())


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_the_partial_run_logs_out_and_exits_128_plus_n(
    target: tfp.ReferenceTarget, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    before_logouts, before_tasks = logouts(target), tasks_created(target)
    cli = Cli(target, tmp_path / "run", "--ws-url", target.ws_url, "--websockets", "4")
    cli.wait_for("the load to start", cli.load_started)
    cli.wait_for("tasks at the target", lambda: tasks_created(target) > before_tasks + 20)
    cli.proc.send_signal(sig)
    rc, out = cli.finish()
    assert rc == code, "".join(cli.stderr)
    assert "run interrupted" in out and "saved the run to" in out
    run = tfp.load_run(tmp_path / "run")
    assert run.meta["stopped"] == "interrupted"
    assert run.load_events().height > 20
    assert (tmp_path / "run" / "events.parquet").is_file()  # compacted at the end
    assert not part_paths(tmp_path / "run", "events")
    # Every socket was closed with a close frame and every user logged out before the process left.
    ws = run.ws_events
    closes = ws.filter(pl.col("kind") == "close")
    assert ws.filter(pl.col("kind") == "connect").height == closes.height == 4
    assert closes["code"].to_list() == [1000] * 4
    assert logouts(target) == before_logouts + USERS


def test_second_ctrl_c_leaves_at_once_keeping_the_rows_on_disk(
    target: tfp.ReferenceTarget, tmp_path: Path
) -> None:
    cli = Cli(target, tmp_path / "run", "--timeout", "60")
    cli.wait_for("rows on disk", cli.rows_on_disk)
    # Freeze the target: the clean stop (drain, logouts) now waits for its 60 s request timeout.
    os.kill(target.pid, signal.SIGSTOP)
    try:
        cli.proc.send_signal(signal.SIGINT)
        cli.wait_line("interrupted, stopping")
        t0 = time.monotonic()
        cli.proc.send_signal(signal.SIGINT)
        rc, _ = cli.finish(timeout=50)
        left_after = time.monotonic() - t0
    finally:
        os.kill(target.pid, signal.SIGCONT)
    assert rc == 130, "".join(cli.stderr)
    assert left_after < 30, left_after  # at once, not after the 60 s the clean stop would take
    run = tfp.load_run(tmp_path / "run")
    assert run.meta["stopped"] == "interrupted"
    assert not (tmp_path / "run" / "events.parquet").exists()  # left before compaction
    assert run.load_events().height > 0


def test_sigkill_mid_run_leaves_a_crashed_run_with_its_rows(
    target: tfp.ReferenceTarget, tmp_path: Path
) -> None:
    cli = Cli(target, tmp_path / "run")
    cli.wait_for("rows on disk", cli.rows_on_disk)
    assert tfp.load_run(tmp_path / "run").meta["stopped"] == "running"  # a live run opens too
    cli.proc.kill()
    cli.finish()
    run = tfp.load_run(tmp_path / "run")
    assert run.meta["stopped"] == "crashed"
    ev = run.load_events()
    assert ev.height > 0 and run.duration_s > 0
    assert ev["endpoint"].cast(pl.String).str.starts_with("POST /tasks").any()
    assert tfp.runs(tmp_path)["stopped"].to_list() == ["crashed"]


@pytest.mark.parametrize("kind", ["file", "other run"])
def test_bad_save_path_fails_before_any_load(target: tfp.ReferenceTarget, tmp_path: Path, kind: str) -> None:
    dest = tmp_path / "dest"
    if kind == "file":
        dest.write_text("not a folder")
    else:
        dest.mkdir()
        (dest / "meta.json").write_text(json.dumps({"run_id": "someone-else-20260101-000000-000"}))

    def served() -> float:  # every request but our own /metrics reads
        return sum(n for (route, _), n in target.requests_total().items() if route != "GET /metrics")

    before = served()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskforge_perf",
            "run",
            "--base-url",
            target.base_url,
            "--duration",
            "30",
            "--concurrency",
            "2",
            "--quiet",
            "--save",
            str(dest),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "save_to" in out.stderr and str(dest) in out.stderr
    assert served() == before  # not even a signup reached the target
