"""``ReferenceTarget`` and the ``target`` command: start, ready line, clean stop, no orphans."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from taskforge_perf.cli import build_parser
from taskforge_perf.target import ReferenceTarget, TargetConfig, TargetStartError
from taskforge_perf.target.cli import config_from_args


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return True


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_sync_context_stops_child_even_when_body_raises() -> None:
    target = ReferenceTarget(hash_iterations=1000)
    with pytest.raises(RuntimeError, match="boom"), target:
        pid = target.pid
        assert urllib.request.urlopen(target.base_url + "/health", timeout=5).status == 200
        assert target.ws_url.startswith("ws://127.0.0.1:")
        raise RuntimeError("boom")
    assert _wait_gone(pid) and not target.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = target.base_url


async def test_async_context_stops_child_even_when_body_raises() -> None:
    target = ReferenceTarget(TargetConfig(seed=4), hash_iterations=1000)
    assert target.config.seed == 4 and target.config.hash_iterations == 1000
    with pytest.raises(KeyError):
        async with target as t:
            pid = t.pid
            assert (await t.ametrics())["taskforge_ws_connections"][()] == 0
            raise KeyError("x")
    assert _wait_gone(pid)


def test_child_exits_when_parent_is_killed() -> None:
    code = textwrap.dedent("""
        import sys, time
        from taskforge_perf.target import ReferenceTarget
        t = ReferenceTarget(hash_iterations=1000).start()
        print(t.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _gone(child)
        parent.kill()  # no chance to clean up: the child must notice stdin EOF
        parent.wait(5)
        assert _wait_gone(child), "orphaned target"
    finally:
        parent.kill()
        parent.wait(5)
        if parent.stdout is not None:
            parent.stdout.close()


def test_start_error_carries_stderr() -> None:
    with ReferenceTarget(hash_iterations=1000) as first:
        port = int(first.base_url.rsplit(":", 1)[1])
        with pytest.raises(TargetStartError, match="(?s)exited with code .*stderr:.*[Aa]ddress"):
            ReferenceTarget(port=port).start()


def test_cli_prints_one_json_line_and_exits_cleanly_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskforge_perf", "target", "--port", "0", "--ws-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) == {"base_url", "ws_url", "pid"} and info["pid"] == proc.pid
        assert urllib.request.urlopen(info["base_url"] + "/health", timeout=5).status == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and out == "", err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_bad_flag_value_names_the_field() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "taskforge_perf", "target", "--error-rate", "POST /tasks=2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2 and "error_rate" in res.stderr and res.stdout == ""


def test_config_round_trips_through_the_command_line() -> None:
    cfg = TargetConfig(
        port=1234,
        latency={"POST /tasks": "exp:20ms", "*": "uniform:1ms:2ms"},
        error_rate="GET /health=0.25",
        stalls=[(2, 3), (10, 0.5)],
        drop_rate=0.1,
        ws_drop_every=5,
        max_concurrency=3,
        service_time=0.004,
        profile="candidate",
        leak=False,
        ping_interval=2,
        task_durations="etl-data=normal:1s:100ms",
        outbox_interval=1,
        real_quirks=True,
        seed=9,
        access_ttl=1,
        hash_iterations=7,
    )
    args = build_parser().parse_args(["target", *cfg.to_argv()])
    assert config_from_args(args) == cfg
    real = TargetConfig(
        real_timing=True, outbox_time_scale=0.05, outbox_first_delay=2, worker_concurrency=2, seed=1
    )
    assert real.real_quirks and "--real-timing" in real.to_argv()
    args = build_parser().parse_args(["target", *real.to_argv()])
    assert config_from_args(args) == real
