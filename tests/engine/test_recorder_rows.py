"""The recorder's row buffer (one tuple per event): the read-only column view that the live
monitor and the Prometheus exporter read between flushes, and rows taken mid-conversion."""

from __future__ import annotations

import asyncio

import polars as pl
import pytest

from taskforge_perf.engine.prom import rows_since
from taskforge_perf.engine.recorder import HttpRecorder


def _fill(rec: HttpRecorder, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        rec.record(i, i + 10, i + 30, 200, None, 5, 0, "GET /x", "GET", "u@x", "load", f"t{i}")


def test_column_view_reads_the_buffered_rows() -> None:
    rec = HttpRecorder(flush_rows=1000)
    _fill(rec, 5)
    cols = rec.columns
    assert len(cols) == len(rec.names) == 15
    starts, ends = cols[1], cols[2]
    assert len(starts) == 5 and starts[-2:] == [13, 14] and ends[0] == 30
    assert list(cols[rec.names.index("task_id")]) == [f"t{i}" for i in range(5)]
    with pytest.raises(IndexError):
        cols[15]
    assert rec.pending() == 5
    rec.flush()
    assert rec.pending() == 0 and len(rec.columns[0]) == 0 and not rec.columns[0]


async def test_rows_taken_mid_conversion_are_read_by_the_exporter_and_since() -> None:
    rec = HttpRecorder(flush_rows=100)
    _fill(rec, 100)  # full: conversion starts on the next loop turns, one column per turn
    _fill(rec, 7, start=100)
    assert rec._converting and rec.pending() == 107
    live = rows_since(rec, 0)  # newest first from the buffer, then the batch being converted
    assert live["t_start"].to_list() == [i + 10 for i in range(107)]
    assert rec.since(50)["t_intended"].to_list() == list(range(50, 107))
    await asyncio.sleep(0)  # one loop turn: the first column converted, the rest still rows
    frame = rec.frame()  # finishes the batch being converted, then the buffer
    assert frame["t_intended"].to_list() == list(range(107))
    assert frame.schema == pl.Schema(rec.schema)
