"""Columnar event buffers flushed in chunks to Polars, streamed to Parquet part files.

The hot path appends plain Python values to one list per column: no dict and no frame per event.
The lists become one Polars chunk every ``flush_rows`` events (``FLUSH_ROWS``) or every
``FLUSH_INTERVAL_S`` seconds (``autoflush``), whichever comes first. With ``spill_dir`` (a run
folder's ``parts/``, the default for ``LoadTester`` runs) each chunk is written as its own Parquet
part file (atomically: a crash loses at most the rows of the last interval) and dropped from memory,
so memory stays flat however long the run; without it the chunks stay in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from taskforge_perf.schema import HTTP_SCHEMA, WS_SCHEMA
from taskforge_perf.store import write_part

#: Rows per chunk. Inside a running event loop a full buffer is converted one column per loop turn
#: (~0.1-0.3 ms each here) instead of in one ~3 ms block, so flushing never shows up as loop lag or
#: start lateness.
FLUSH_ROWS = 8_192
#: Seconds between time-based flushes while a run goes (``autoflush``): the most a crash can lose.
FLUSH_INTERVAL_S = 2.0


class _Batch:
    """Rows taken out of the buffers, being converted to Series one column at a time."""

    __slots__ = ("cols", "series", "done")

    def __init__(self, cols: list[list[Any] | None]) -> None:
        self.cols = cols
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
        self.columns: tuple[list[Any], ...] = tuple([] for _ in self.names)
        self._chunks: list[pl.DataFrame] = []
        self._parts: list[Path] = []
        self._converting: list[_Batch] = []
        self._ends: list[int] = []  # row count after each stored chunk / part (for since())
        self.rows = 0  # rows recorded so far, flushed or not
        self._seen: pl.DataFrame | None = None  # part files read by snapshot()
        self._seen_parts = 0
        if spill_dir is not None:
            spill_dir.mkdir(parents=True, exist_ok=True)

    def pending(self) -> int:
        """Rows not yet in a chunk (buffered, or being converted)."""
        return len(self.columns[0]) + sum(len(b.cols[-1] or ()) for b in self._converting)

    def _take(self) -> _Batch:
        batch = _Batch([c[:] for c in self.columns])  # copies: the hot path keeps its appenders
        for col in self.columns:
            col.clear()
        self._converting.append(batch)
        return batch

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
            loop.call_soon(self._convert_step, loop, batch)
        else:
            self._finish(batch)

    def _convert_column(self, batch: _Batch) -> None:
        i = len(batch.series)
        name = self.names[i]
        batch.series.append(pl.Series(name, batch.cols[i], dtype=self.schema[name]))
        batch.cols[i] = None

    def _finish(self, batch: _Batch) -> None:
        while len(batch.series) < len(self.names):
            self._convert_column(batch)
        batch.done = True
        self._converting.remove(batch)
        self._store(pl.DataFrame(batch.series))

    def _finish_all(self) -> None:
        for batch in list(self._converting):
            self._finish(batch)

    def flush_pending(self) -> None:
        """Start converting the buffered rows now (time-based flush); no-op when empty."""
        if self.columns[0]:
            self._flush_soon()

    def flush(self) -> None:
        """Turn every buffered row into chunks now (or Parquet parts)."""
        self._finish_all()
        if self.columns[0]:
            self._finish(self._take())

    def _store(self, chunk: pl.DataFrame) -> None:
        self._ends.append((self._ends[-1] if self._ends else 0) + chunk.height)
        if self.spill_dir is not None:
            path = self.spill_dir / f"{self.prefix}-{len(self._parts):05d}.parquet"
            write_part(chunk, path)
            self._parts.append(path)
        else:
            self._chunks.append(chunk)

    def snapshot(self) -> pl.DataFrame:
        """Every row recorded so far, without flushing (for checks while a run goes).

        Part files already read are kept (appended to, never re-read): the abort-on-fail watch
        calls this a few times a second, and re-reading hundreds of parts would stall the loop.
        """
        self._finish_all()
        if len(self._parts) > self._seen_parts:
            new = [pl.read_parquet(p) for p in self._parts[self._seen_parts :]]
            self._seen = pl.concat(([self._seen] if self._seen is not None else []) + new, how="vertical")
            self._seen_parts = len(self._parts)
        frames = ([self._seen] if self._seen is not None else []) + list(self._chunks)
        if self.columns[0]:
            names, schema = self.names, self.schema
            frames.append(
                pl.DataFrame(
                    [pl.Series(n, c, dtype=schema[n]) for n, c in zip(names, self.columns, strict=True)]
                )
            )
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
                chunk = pl.read_parquet(item) if isinstance(item, Path) else item
                frames.append(chunk.slice(max(start - begin, 0)))
            begin = end
        if self.columns[0]:
            skip = max(start - begin, 0)
            frames.append(
                pl.DataFrame(
                    [
                        pl.Series(n, c[skip:], dtype=self.schema[n])
                        for n, c in zip(self.names, self.columns, strict=True)
                    ]
                )
            )
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
        (
            self._ti,
            self._ts,
            self._te,
            self._st,
            self._er,
            self._bi,
            self._bo,
            self._ep,
            self._me,
            self._us,
            self._ph,
            self._wk,
            self._tk,
            self._gr,
            self._se,
        ) = (c.append for c in self.columns)

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
        """Append one request (times in ns since run start)."""
        self._ti(t_intended)
        self._ts(t_start)
        self._te(t_end)
        self._st(status)
        self._er(error)
        self._bi(bytes_in)
        self._bo(bytes_out)
        self._ep(endpoint)
        self._me(method)
        self._us(user)
        self._ph(phase)
        self._wk(self.worker)
        self._tk(task_id)
        self._gr(group)
        self._se(session)
        self.rows += 1
        if len(self.columns[0]) >= self.flush_rows:
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
        values = (
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
        for col, v in zip(self.columns, values, strict=True):
            col.append(v)
        self.rows += 1
        if len(self.columns[0]) >= self.flush_rows:
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
