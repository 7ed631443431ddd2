"""``taskforge-perf run --processes 2`` in a subprocess: Ctrl-C stops every shard and keeps their rows.

The test waits for part files of both workers on disk (observable state) before it signals.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.store import part_paths


def _rows_of(folder: Path, worker: int) -> int:
    n = 0
    for p in part_paths(folder, "events"):
        if p.name.startswith(f"events-w{worker}-"):
            try:
                n += pl.read_parquet(p).height
            except OSError:
                pass
    return n


@pytest.mark.timeout(180)
def test_ctrl_c_stops_every_shard_and_keeps_their_rows(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with tfp.ReferenceTarget(seed=5, hash_iterations=1000) as target:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskforge_perf",
                "run",
                "--base-url",
                target.base_url,
                "--duration",
                "120",
                "--rate",
                "40",
                "--users",
                "4",
                "--processes",
                "2",
                "--quiet",
                "--save",
                str(folder),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            import time

            deadline = time.monotonic() + 90
            # Both shards have load rows on disk (parts land every ~2 s).
            while not (_rows_of(folder, 0) > 5 and _rows_of(folder, 1) > 5):
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "no rows of both workers on disk"
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    assert "saved the run to" in out, (out, err)
    run = tfp.load_run(folder)
    why = (err, run.meta.get("shards"), run.meta.get("warnings"))
    assert run.meta["stopped"] == "interrupted", why
    assert run.meta["workers"] == 2
    assert [s["status"] for s in run.meta["shards"]] == ["ok", "ok"], why
    assert [s["stopped"] for s in run.meta["shards"]] == ["interrupted", "interrupted"], why
    load = run.load_events()
    assert sorted(load["worker"].unique().to_list()) == [0, 1]
    assert load.height > 10
    assert run.meta["duration_s"] < 60  # stopped long before the plan's 120 s
    assert not part_paths(folder, "events")  # compacted
