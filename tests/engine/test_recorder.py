"""The columnar recorder: chunks converted a column per loop turn lose and reorder nothing."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from pathlib import Path

import polars as pl
import pytest

import taskforge_perf.engine.recorder as recorder_mod
from taskforge_perf.engine.recorder import HttpRecorder, WsRecorder
from taskforge_perf.schema import HTTP_SCHEMA, WS_SCHEMA


def _record(rec: HttpRecorder, i: int) -> None:
    rec.record(
        i,
        i + 1,
        i + 2,
        202 if i % 7 else 500,
        None if i % 7 else "http_5xx",
        10,
        20,
        f"POST /tasks t{i % 3}",
        "POST",
        f"u{i % 5}@example.com",
        "load",
        str(uuid.UUID(int=i)) if i % 2 else None,
    )


async def test_incremental_flush_inside_a_loop_keeps_every_row_in_order() -> None:
    rec = HttpRecorder(flush_rows=1000)
    n = 20_500
    for i in range(n):
        _record(rec, i)
        if i % 300 == 0:
            await asyncio.sleep(0)  # loop turns: conversions advance a column at a time
        if i == 10_000:
            mid = rec.snapshot()
            assert mid.height == 10_001 and mid["t_intended"].to_list() == list(range(10_001))
    frame = rec.frame()
    assert dict(frame.schema) == HTTP_SCHEMA
    assert frame.height == n == rec.rows
    assert frame["t_intended"].to_list() == list(range(n))
    assert frame.filter(pl.col("status") == 500)["error"].cast(pl.String).unique().to_list() == ["http_5xx"]
    assert frame["task_id"].null_count() == (n + 1) // 2
    assert rec.pending() == 0


def test_flush_without_a_loop_is_immediate() -> None:
    rec = WsRecorder(flush_rows=10)
    for i in range(25):
        rec.record(i, "message", i, "u@example.com", phase="load", task_id="t", status="completed")
    assert rec.pending() == 5
    frame = rec.frame()
    assert dict(frame.schema) == WS_SCHEMA and frame["t"].to_list() == list(range(25))


def test_spilled_rows_reach_part_files_and_snapshots_read_each_part_once(tmp_path: Path) -> None:
    rec = HttpRecorder(flush_rows=100, spill_dir=tmp_path)
    for i in range(250):
        _record(rec, i)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events-00000.parquet", "events-00001.parquet"]
    assert rec._chunks == []  # spilled chunks are not kept in memory
    first = rec.snapshot()
    assert first["t_intended"].to_list() == list(range(250))
    (tmp_path / "events-00000.parquet").unlink()  # read once already: a later snapshot does not re-read it
    for i in range(250, 420):
        _record(rec, i)
    assert rec.snapshot()["t_intended"].to_list() == list(range(420))


async def test_parts_are_written_off_the_loop_and_read_from_memory_until_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a loop a part file is written by the writer thread, never the loop's (a write is ~4.5 ms
    of CPU at 8,192 rows: open-model starts due meanwhile were late); until it exists, readers get
    its rows from memory; ``flush`` returns with every file on disk."""
    gate, writers = threading.Event(), []
    real = recorder_mod.write_part

    def slow_write(chunk: pl.DataFrame, path: Path) -> None:
        writers.append(threading.get_ident())
        assert gate.wait(10)  # held until the readers below have run
        real(chunk, path)

    monkeypatch.setattr(recorder_mod, "write_part", slow_write)
    rec = HttpRecorder(flush_rows=100, spill_dir=tmp_path)
    for i in range(250):
        _record(rec, i)
    while rec.pending() > 50:  # noqa: ASYNC110 - loop turns are what converts the full batches
        await asyncio.sleep(0)
    assert os.listdir(tmp_path) == []  # both writes are held: nothing on disk yet
    assert rec.snapshot()["t_intended"].to_list() == list(range(250))
    assert rec.since(120)["t_intended"].to_list() == list(range(120, 250))
    gate.set()
    rec.flush()
    assert sorted(os.listdir(tmp_path)) == [
        "events-00000.parquet",
        "events-00001.parquet",
        "events-00002.parquet",
    ]
    assert writers and threading.get_ident() not in writers[:2]  # the loop's thread wrote neither part
    assert rec.frame()["t_intended"].to_list() == list(range(250))
    assert rec._writing == {}  # written chunks are not kept in memory
