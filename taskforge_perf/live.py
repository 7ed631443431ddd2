"""Progress displays fed by ``engine.monitor.Snapshot``: a terminal progress line (CLI, scripts)."""

from __future__ import annotations

import sys
from typing import TextIO

from taskforge_perf.engine.monitor import Snapshot


def format_snapshot(s: Snapshot) -> str:
    """One line: elapsed/planned, phase, rps, approximate percentiles, errors, tasks, sockets."""
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    errors = sum(s.errors.values())
    parts = [
        f"{s.elapsed_s:5.1f}/{s.planned_s:.0f}s",
        f"{s.phase} ({s.phase_remaining_s:.0f}s left)",
        f"{s.rps:7.0f} req/s",
        f"~p50/p95/p99 {ms(s.approx_p50_ms)}/{ms(s.approx_p95_ms)}/{ms(s.approx_p99_ms)} ms",
        f"{s.requests} req",
        f"{errors} err",
        f"{s.in_flight} in flight",
        f"{s.tasks_created} tasks",
    ]
    if s.ws_open or s.ws_completed:
        parts.append(f"{s.ws_open} ws, {s.ws_completed} done")
    if s.late:
        parts.append(f"{s.late} late")
    return " | ".join(parts)


class TerminalProgress:
    """Rewrites one progress line on a terminal (a plain line per update when not a TTY)."""

    def __init__(self, stream: TextIO | None = None, *, every: float = 1.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self._last = -1e9
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, snap: Snapshot) -> None:
        if snap.elapsed_s - self._last < self.every:
            return
        self._last = snap.elapsed_s
        line = format_snapshot(snap)
        if self._tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the line."""
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
