"""Run folders: streamed by default, compacted at the end, saved without silent overwrites, and
readable while live or after a crash."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlunsplit

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.engine.recorder import HttpRecorder, autoflush
from taskforge_perf.errors import ConfigError
from taskforge_perf.schema import HTTP_SCHEMA
from taskforge_perf.store import RunFolder, part_paths

FAST = {"hash_iterations": 1000}


def _row(rec: HttpRecorder, i: int) -> None:
    rec.record(i, i, i + 5, 200, None, 1, 2, "GET /health", "GET", "u@example.com", "load", None)


@pytest.fixture(scope="module")
def target() -> tfp.ReferenceTarget:
    with tfp.ReferenceTarget(seed=45, **FAST) as t:
        yield t


def test_a_run_streams_to_the_default_store_and_reads_back_lazily(
    target: tfp.ReferenceTarget, _run_store: Path
) -> None:
    tester = tfp.LoadTester(target, tfp.UserPool(count=2, email_prefix="store"), live=False)
    run = tester.run_sync(duration=0.5, concurrency=2, name="streamed")
    assert run.path is not None and run.path.parent == _run_store and run.path.name == run.run_id
    assert (run.path / "events.parquet").is_file() and (run.path / "ws_events.parquet").is_file()
    assert not (run.path / "parts").exists()  # compacted, parts removed
    meta = json.loads((run.path / "meta.json").read_text())
    assert meta["stopped"] == "completed" and "writer" not in meta
    on_disk = pl.read_parquet(run.path / "events.parquet")
    assert on_disk.height == run.events.height == run.meta["counters"]["requests"]
    assert dict(on_disk.schema) == HTTP_SCHEMA
    # save() without a path is the folder it already lives in: nothing copied, meta rewritten.
    run.meta["note"] = "checked"
    assert run.save() == run.path
    assert json.loads((run.path / "meta.json").read_text())["note"] == "checked"


def test_save_dir_none_keeps_the_run_in_memory(
    target: tfp.ReferenceTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TASKFORGE_PERF_RUNS")
    tester = tfp.LoadTester(target, tfp.UserPool(count=2, email_prefix="mem"), live=False, save_dir=None)
    run = tester.run_sync(duration=0.3, concurrency=1)
    assert run.path is None and run.events.height > 0
    assert list(tmp_path.iterdir()) == []
    folder = run.save(tmp_path / "later")
    assert run.path == folder and tfp.load_run(folder).events.height == run.events.height


def test_save_elsewhere_copies_and_never_overwrites_another_run(
    target: tfp.ReferenceTarget, tmp_path: Path
) -> None:
    tester = tfp.LoadTester(target, tfp.UserPool(count=2, email_prefix="copy"), live=False)
    a = tester.run_sync(duration=0.3, concurrency=1, name="a", save_to=tmp_path / "a")
    b = tester.run_sync(duration=0.3, concurrency=1, name="b", save_to=tmp_path / "b")
    assert a.path == tmp_path / "a"
    copy = a.save(tmp_path / "copy")
    assert a.path == tmp_path / "a"  # the run still reads its own folder
    assert tfp.load_run(copy).events.equals(a.events)
    assert a.save(tmp_path / "copy") == copy  # the same run again: fine
    with pytest.raises(ConfigError, match="already holds another run"):
        b.save(tmp_path / "a")
    with pytest.raises(ConfigError, match="already holds another run"):
        tester.run_sync(duration=0.3, concurrency=1, name="c", save_to=tmp_path / "a")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="other files"):
        b.save(tmp_path / "junk")
    assert tfp.load_run(tmp_path / "a").meta["name"] == "a"


def test_meta_redacts_credentials_in_the_target_url(tmp_path: Path) -> None:
    url = urlunsplit(("http", "alice:s3cret@127.0.0.1:3000", "", "", ""))  # credentials, loopback host
    folder = RunFolder.create(tmp_path / "r", {"run_id": "r-1", "target": {"base_url": url}})
    text = (folder.path / "meta.json").read_text()
    assert "s3cret" not in text and "alice" not in text and "***@127.0.0.1:3000" in text


async def test_autoflush_writes_parts_every_interval_and_never_a_half_file(tmp_path: Path) -> None:
    rec = HttpRecorder(spill_dir=tmp_path / "parts", flush_rows=1_000_000)
    flusher = asyncio.ensure_future(autoflush((rec,), interval=0.05))
    try:
        for i in range(10):
            _row(rec, i)
        while not part_paths(tmp_path, "events"):  # noqa: ASYNC110 - polling files; time flushes
            await asyncio.sleep(0.01)
        for i in range(10, 20):
            _row(rec, i)
        while sum(pl.read_parquet(p).height for p in part_paths(tmp_path, "events")) < 20:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    finally:
        flusher.cancel()
    assert [p.name for p in (tmp_path / "parts").iterdir() if not p.name.endswith(".parquet")] == []
    assert rec.frame()["t_intended"].to_list() == list(range(20))


def test_load_run_reports_a_dead_writer_as_crashed_and_reads_its_parts(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    meta = {"run_id": "x-1", "name": "x", "load_start_ns": 0}
    folder = RunFolder.create(tmp_path / "x", meta)
    rec = HttpRecorder(spill_dir=folder.parts, flush_rows=5)
    for i in range(12):
        _row(rec, i * 1_000_000_000)
    assert tfp.load_run(folder.path).meta["stopped"] == "running"  # this process: a live run
    live = tfp.load_run(folder.path)
    assert live.events.height == 10  # the two flushed parts; 2 rows still buffered
    folder.writer = {**folder.writer, "pid": int(dead.stdout)}
    folder.write_meta({**meta, "stopped": "running"})
    run = tfp.load_run(folder.path)
    assert run.meta["stopped"] == "crashed" and run.events.height == 10
    assert run.duration_s == pytest.approx(9.0, abs=0.01)  # from the rows that reached disk


def test_saving_a_crashed_run_in_place_compacts_its_parts(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "x", {"run_id": "x-1", "name": "x", "load_start_ns": 0})
    rec = HttpRecorder(spill_dir=folder.parts, flush_rows=4)
    for i in range(8):
        _row(rec, i)
    live = tfp.load_run(folder.path)
    with pytest.raises(ConfigError, match="still being recorded"):
        live.save()
    live.meta["stopped"] = "crashed"
    assert live.save() == folder.path
    assert not part_paths(folder.path, "events") and (folder.path / "events.parquet").is_file()
    again = tfp.load_run(folder.path)
    assert again.meta["stopped"] == "crashed" and again.events["t_intended"].to_list() == list(range(8))
