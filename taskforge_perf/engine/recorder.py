"""Columnar event buffers flushed in chunks to Polars, streamed to Parquet part files.

The hot path appends one tuple per event (in schema order) to a list: no dict, no frame, and one
append instead of one per column (15 bound-method calls cost ~1.3 µs per HTTP row, the tuple ~0.25
µs; turning the rows into columns at a flush adds ~0.2 µs). The rows become one Polars chunk every
``flush_rows`` events (``FLUSH_ROWS``) or every
``FLUSH_INTERVAL_S`` seconds (``autoflush``), whichever comes first. With ``spill_dir`` (a run
folder's ``parts/``, the default for ``LoadTester`` runs) each chunk is written as its own Parquet
part file (atomically: a crash loses at most the rows of the last interval) and dropped from memory,
so memory stays flat however long the run; without it the chunks stay in memory. Inside a running
event loop a part is written by a background thread (``engine.part_writer``; Polars releases the GIL
while it encodes, and the loop's thread, waking from its poll, preempts the encoder): an
8,192-row part costs ~4.5 ms of CPU, which in the loop made every open-model arrival due
meanwhile late (p99 start lateness 6-10 ms at 16k req/s). Until
its file is written the chunk stays in memory (readers use it); ``flush`` waits for every write.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from taskforge_perf.engine.part_writer import part_writer
from taskforge_perf.schema import HTTP_SCHEMA, WS_SCHEMA
from taskforge_perf.store import write_part

#: Rows per chunk. Inside a running event loop a full buffer is converted one column per loop turn
#: (~0.1-0.3 ms each here) instead of in one ~3 ms block, so flushing never shows up as loop lag or
#: start lateness.
FLUSH_ROWS = 8_192
#: Seconds between two column conversions of a batch: on consecutive loop turns the 15 steps of
#: 0.3-1.4 ms each piled up into 2-7 ms of open-model start lateness at 16k req/s (the loop never
#: caught up in between); 1 ms (uvloop's timer resolution) apart, it does.
CONVERT_GAP_S = 0.001
#: Seconds between time-based flushes while a run goes (``autoflush``): the most a crash can lose.
FLUSH_INTERVAL_S = 2.0

#: Parts waiting for the background writer beyond which the next one is written in the loop (a
#: starved writer must not hold a whole run in memory).
MAX_WRITING = 8


class _Column:
    """One column of a list of row tuples, read lazily: ``len`` is free, a slice builds only the
    values asked for (the live monitor reads the newest rows' times a few times a second)."""

    __slots__ = ("rows", "i")

    def __init__(self, rows: list[tuple[Any, ...]], i: int) -> None:
        self.rows = rows
        self.i = i

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | slice) -> Any:
        i = self.i
        if isinstance(key, slice):
            return [r[i] for r in self.rows[key]]
        return self.rows[key][i]

    def __iter__(self) -> Any:
        i = self.i
        return (r[i] for r in self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)


class _Columns:
    """Read-only columns of a list of row tuples (``view[i]``: a lazy ``_Column``), for the few
    readers between flushes (the live monitor, the Prometheus exporter)."""

    __slots__ = ("rows", "width", "lazy")

    def __init__(self, rows: list[tuple[Any, ...]], width: int, *, lazy: bool = True) -> None:
        self.rows = rows
        self.width = width
        self.lazy = lazy  # False: each column as a plain list (a batch's, for pl.Series)

    def __getitem__(self, i: int) -> Any:
        if not -self.width <= i < self.width:
            raise IndexError(i)
        if not self.lazy:
            return [r[i] for r in self.rows]
        return _Column(self.rows, i % self.width)

    def __len__(self) -> int:
        return self.width

    def __iter__(self) -> Any:
        return (self[i] for i in range(self.width))


class _Batch:
    """Rows taken out of the buffer, being converted to Series one column at a time."""

    __slots__ = ("rows", "cols", "series", "done")

    def __init__(self, rows: list[tuple[Any, ...]], width: int) -> None:
        self.rows = rows
        self.cols = _Columns(rows, width, lazy=False)
        self.series: list[pl.Series] = []
        self.done = False


class ColumnBuffer:
    """Append-only columns for one schema, flushed to Polars chunks."""

    def __init__(
        self,
        schema: Mapping[str, pl.DataType],
        *,
        flush_rows: int = FLUSH_ROWS,
        spill_dir: Path | None = None,
        prefix: str = "part",
    ) -> None:
        self.schema = dict(schema)
        self.names = tuple(schema)
        self.flush_rows = flush_rows
        self.spill_dir = spill_dir
        self.prefix = prefix
        self._rows: list[tuple[Any, ...]] = []  # one tuple per event, in schema order
        self._add = self._rows.append
        self._chunks: list[pl.DataFrame] = []
        self._parts: list[Path] = []
        self._writing: dict[int, tuple[pl.DataFrame, Future[None]]] = {}  # part index -> chunk, write
        self._converting: list[_Batch] = []
        self._ends: list[int] = []  # row count after each stored chunk / part (for since())
        self.rows = 0  # rows recorded so far, flushed or not
        self._seen: pl.DataFrame | None = None  # part files read by snapshot()
        self._seen_parts = 0
        if spill_dir is not None:
            spill_dir.mkdir(parents=True, exist_ok=True)

    @property
    def columns(self) -> _Columns:
        """The buffered rows by column (``columns[i]`` builds a list: readers only)."""
        return _Columns(self._rows, len(self.names))

    def buffered(self) -> int:
        """Rows in the buffer (not yet taken for conversion)."""
        return len(self._rows)

    def pending(self) -> int:
        """Rows not yet in a chunk (buffered, or being converted)."""
        return len(self._rows) + sum(len(b.rows) for b in self._converting)

    def _take(self) -> _Batch:
        batch = _Batch(self._rows, len(self.names))
        self._rows = []
        self._add = self._rows.append
        self._converting.append(batch)
        return batch

    def _frame_of(self, rows: list[tuple[Any, ...]]) -> pl.DataFrame:
        names, schema = self.names, self.schema
        return pl.DataFrame(
            [pl.Series(n, [r[i] for r in rows], dtype=schema[n]) for i, n in enumerate(names)]
        )

    def _flush_soon(self) -> None:
        """The buffer is full: convert it column by column over the next loop turns."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        loop.call_soon(self._convert_step, loop, self._take())

    def _convert_step(self, loop: asyncio.AbstractEventLoop, batch: _Batch) -> None:
        if batch.done:
            return
        self._convert_column(batch)
        if len(batch.series) < len(self.names):
            loop.call_later(CONVERT_GAP_S, self._convert_step, loop, batch)
        else:
            self._finish(batch)

    def _convert_column(self, batch: _Batch) -> None:
        i = len(batch.series)
        name = self.names[i]
        batch.series.append(pl.Series(name, [r[i] for r in batch.rows], dtype=self.schema[name]))

    def _finish(self, batch: _Batch) -> None:
        while len(batch.series) < len(self.names):
            self._convert_column(batch)
        batch.done = True
        batch.rows = []
        self._converting.remove(batch)
        self._store(pl.DataFrame(batch.series))

    def _finish_all(self) -> None:
        for batch in list(self._converting):
            self._finish(batch)

    def flush_pending(self) -> None:
        """Start converting the buffered rows now (time-based flush); no-op when empty."""
        if self._rows:
            self._flush_soon()

    def flush(self) -> None:
        """Turn every buffered row into chunks now (or Parquet parts, on disk when it returns)."""
        self._finish_all()
        if self._rows:
            self._finish(self._take())
        for i in sorted(self._writing):
            writing = self._writing.pop(i, None)
            if writing is not None:
                writing[1].result()  # raises what the write raised

    def _store(self, chunk: pl.DataFrame) -> None:
        self._ends.append((self._ends[-1] if self._ends else 0) + chunk.height)
        if self.spill_dir is not None:
            i = len(self._parts)
            path = self.spill_dir / f"{self.prefix}-{i:05d}.parquet"
            self._parts.append(path)
            if asyncio._get_running_loop() is None or len(self._writing) >= MAX_WRITING:
                write_part(chunk, path)
            else:  # off the loop: see the module's docstring
                fut = part_writer().submit(write_part, chunk, path)
                self._writing[i] = (chunk, fut)
                fut.add_done_callback(functools.partial(self._written, i))
        else:
            self._chunks.append(chunk)

    def _written(self, i: int, fut: Future[None]) -> None:
        """The writer thread wrote part ``i``: drop its chunk (a failed write stays for ``flush``)."""
        if fut.exception() is None:
            self._writing.pop(i, None)

    def _part(self, i: int) -> pl.DataFrame:
        """The ``i``-th part's rows (from memory while its file is being written)."""
        writing = self._writing.get(i)
        if writing is not None and not writing[1].done():
            return writing[0]
        return pl.read_parquet(self._parts[i])

    def snapshot(self) -> pl.DataFrame:
        """Every row recorded so far, without flushing (for checks while a run goes).

        Part files already read are kept (appended to, never re-read): the abort-on-fail watch
        calls this a few times a second, and re-reading hundreds of parts would stall the loop.
        """
        self._finish_all()
        if len(self._parts) > self._seen_parts:
            new = [self._part(i) for i in range(self._seen_parts, len(self._parts))]
            self._seen = pl.concat(([self._seen] if self._seen is not None else []) + new, how="vertical")
            self._seen_parts = len(self._parts)
        frames = ([self._seen] if self._seen is not None else []) + list(self._chunks)
        if self._rows:
            frames.append(self._frame_of(self._rows))
        if not frames:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(frames, how="vertical")

    def since(self, start: int) -> pl.DataFrame:
        """Rows recorded after the first ``start`` ones, without flushing: cost proportional to
        the new rows (for in-run checks that keep their own running state)."""
        self._finish_all()
        stored = self._parts if self.spill_dir is not None else self._chunks
        frames = []
        begin = 0
        for i, end in enumerate(self._ends):
            if end > start:
                item = stored[i]
                chunk = self._part(i) if isinstance(item, Path) else item
                frames.append(chunk.slice(max(start - begin, 0)))
            begin = end
        if self._rows:
            frames.append(self._frame_of(self._rows[max(start - begin, 0) :]))
        if not frames:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(frames, how="vertical")

    def frame(self) -> pl.DataFrame:
        """Every row recorded so far as one frame (flushes first)."""
        self.flush()
        frames = list(self._chunks)
        if self._parts:
            frames = [pl.read_parquet(p) for p in self._parts] + frames
        if not frames:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(frames, how="vertical", rechunk=True)


class HttpRecorder(ColumnBuffer):
    """One row per HTTP request, with the columns of ``schema.HTTP_SCHEMA``."""

    def __init__(
        self, *, worker: int = 0, flush_rows: int = FLUSH_ROWS, spill_dir: Path | None = None
    ) -> None:
        super().__init__(HTTP_SCHEMA, flush_rows=flush_rows, spill_dir=spill_dir, prefix="events")
        self.worker = worker

    def record(
        self,
        t_intended: int,
        t_start: int,
        t_end: int,
        status: int,
        error: str | None,
        bytes_in: int,
        bytes_out: int,
        endpoint: str,
        method: str,
        user: str,
        phase: str,
        task_id: str | None,
        group: str | None = None,
        session: int | None = None,
    ) -> None:
        """Append one request (times in ns since run start): one tuple in schema order."""
        self._add(
            (
                t_intended,
                t_start,
                t_end,
                status,
                error,
                bytes_in,
                bytes_out,
                endpoint,
                method,
                user,
                phase,
                self.worker,
                task_id,
                group,
                session,
            )
        )
        self.rows += 1
        if len(self._rows) >= self.flush_rows:
            self._flush_soon()


class WsRecorder(ColumnBuffer):
    """One row per WebSocket event, with the columns of ``schema.WS_SCHEMA``."""

    def __init__(
        self, *, worker: int = 0, flush_rows: int = FLUSH_ROWS, spill_dir: Path | None = None
    ) -> None:
        super().__init__(WS_SCHEMA, flush_rows=flush_rows, spill_dir=spill_dir, prefix="ws_events")
        self.worker = worker

    def record(
        self,
        t: int,
        kind: str,
        conn: int,
        user: str,
        *,
        phase: str,
        task_id: str | None = None,
        task_type: str | None = None,
        status: str | None = None,
        progress: float | None = None,
        since_created_ns: int | None = None,
        since_subscribe_ns: int | None = None,
        handshake_ns: int | None = None,
        code: int | None = None,
        error: str | None = None,
        session: int | None = None,
    ) -> None:
        """Append one WebSocket event (WebSocket events are far rarer than requests)."""
        self._add(
            (
                t,
                kind,
                conn,
                user,
                task_id,
                task_type,
                status,
                progress,
                since_created_ns,
                since_subscribe_ns,
                handshake_ns,
                code,
                error,
                phase,
                self.worker,
                session,
            )
        )
        self.rows += 1
        if len(self._rows) >= self.flush_rows:
            self._flush_soon()


async def autoflush(buffers: tuple[ColumnBuffer, ...], interval: float = FLUSH_INTERVAL_S) -> None:
    """Flush every buffer every ``interval`` seconds until cancelled (rows reach disk promptly)."""
    while True:
        await asyncio.sleep(interval)
        for buf in buffers:
            buf.flush_pending()


@dataclass
class LiveCounters:
    """Counters readable while a run goes (``tester.counters``); plain ints, updated in place."""

    requests: int = 0
    in_flight: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    tasks_created: int = 0
    auth_failures: int = 0
    reauths: int = 0
    refreshes: int = 0
    logins: int = 0
    late: int = 0
    dropped: int = 0
    cap_hits: int = 0
    ws_open: int = 0
    ws_messages: int = 0
    ws_completed: int = 0

    def error(self, kind: str) -> None:
        """Count one error of a kind."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe copy."""
        d = dict(self.__dict__)
        d["errors"] = dict(self.errors)
        return d
