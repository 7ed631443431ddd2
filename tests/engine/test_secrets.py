"""No secret leaves a run: a full short run (HTTP + WebSockets) with DEBUG logging, saved, reported
and printed by the CLI, then every artefact is scanned for the password, the tokens the target
issued and the URL credentials."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.engine.monitor import Snapshot

PASSWORD = "Pw-s3cret-XYZ"
WS_USER, WS_PASS = "wsuser", "wspass-Q7"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
DEBUG_LOGGERS = ("", "websockets", "websockets.client", "aiohttp", "asyncio", "taskforge_perf")


class _Capture(logging.Handler):
    """Every record formatted as a handler would write it (message and traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def debug_logs() -> Iterator[_Capture]:
    handler = _Capture()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in DEBUG_LOGGERS}
    root.addHandler(handler)
    for name in DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _leaks(text: str, secrets: set[str]) -> list[str]:
    found = [s for s in secrets if s in text]
    found += JWT.findall(text)
    return found


def test_no_secret_in_any_artefact_of_a_full_run(debug_logs: _Capture, tmp_path: Path) -> None:
    tokens: set[str] = set()
    pool = tfp.UserPool(count=3, email_prefix="secrets", password=PASSWORD)

    def grab(_snap: Snapshot) -> None:  # every token a user holds while the run goes
        for u in pool:
            tokens.update(t for t in (u.access, u.refresh) if t)

    plan = tfp.StressPlan.steps(20, 40, 20, 1.5)
    step2 = plan.phases[1].name  # "step 2 (40/s)": parentheses in a phase-scoped threshold
    with tfp.ReferenceTarget(seed=3, hash_iterations=1000, access_ttl=2) as target:
        ws_url = target.ws_url.replace("ws://", f"ws://{WS_USER}:{WS_PASS}@")
        tgt = tfp.Target(target.base_url, ws_url)
        tester = tfp.LoadTester(
            tgt, pool, seed=1, websockets=2, live=False, listeners=[grab], monitor_interval=0.05
        )
        run = tester.run_sync(
            plan, name="secrets", thresholds=["error_rate < 50%", f'p95(phase="{step2}") < 10s']
        )
        cli = subprocess.run(
            [sys.executable, "-m", "taskforge_perf", "run", "--base-url", target.base_url]
            + ["--ws-url", ws_url, "--duration", "1", "--rate", "10", "--websockets", "1"]
            + ["--users", "2", "--email-prefix", "secretscli", "--no-save", "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "TASKFORGE_PERF_PASSWORD": PASSWORD},
        )
    assert cli.returncode == 0, cli.stderr
    # The run really carried tokens over HTTP and WebSockets, and renewed them.
    assert run.meta["counters"]["refreshes"] >= 1 and len(tokens) >= 8
    assert run.ws_events.filter(run.ws_events["kind"] == "connect").height >= 2
    assert any("?token=" in line for line in debug_logs.lines), "websockets logged no handshake"
    # Phase-scoped thresholds on a steps() plan survive str -> meta -> parse.
    assert run.assessment().height == 2 and run.report_json()["plan"]["phases"]
    run.breaking_point()

    folder = run.save(tmp_path / "run")
    tfp.report(folder, output=tmp_path / "report.html", progress=False)
    artefacts: dict[str, str] = {
        # Parquet is compressed: scan its rows as text.
        str(p.relative_to(tmp_path)): pl.read_parquet(p).write_csv()
        if p.suffix == ".parquet"
        else p.read_bytes().decode("utf-8", "replace")
        for p in sorted(tmp_path.rglob("*"))
        if p.is_file()
    }
    assert "report.html" in artefacts and len(artefacts) >= 4
    artefacts["logs"] = "\n".join(debug_logs.lines)
    artefacts["cli"] = cli.stdout + cli.stderr
    artefacts["reprs"] = "\n".join(
        repr(x) for x in (tgt, pool, list(pool), tester, run, tester.ws_options, plan)
    ) + str(tgt.to_dict())
    errors = []
    CREDS = f"alice:{PASSWORD}"  # user-info in a loopback URL: must never be shown
    for bad in (
        lambda: tfp.Target(f"http://{CREDS}@127.0.0.1:3000"),  # loopback; refused before any traffic
        lambda: tfp.Target(f"http://{CREDS}@[::1"),  # loopback, unparsable: refused
        lambda: tfp.Target("http://127.0.0.1:1", f"ws://{WS_USER}:{WS_PASS}@127.0.0.1:99999"),
        lambda: tfp.Target("http://127.0.0.1:1", f"ws://{WS_USER}:{WS_PASS}@127.0.0.1:1/?x=1"),
        lambda: tfp.UserPool(users=[("a@b.c", PASSWORD), ("a@b.c", PASSWORD)]),
    ):
        with pytest.raises(tfp.ConfigError) as info:
            bad()
        errors.append(str(info.value))
    artefacts["errors"] = "\n".join(errors)
    assert "***@" in artefacts["errors"] and "***@" in artefacts["reprs"]

    secrets = {PASSWORD, WS_PASS, f"{WS_USER}:", *tokens}
    leaks = {name: _leaks(text, secrets) for name, text in artefacts.items()}
    assert not any(leaks.values()), {k: v[:3] for k, v in leaks.items() if v}
