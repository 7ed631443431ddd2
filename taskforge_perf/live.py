"""Progress displays fed by ``engine.monitor.Snapshot``: the notebook dashboard
(``taskforge_perf.dashboard.LiveDashboard``, ipywidgets) and a terminal progress line (CLI,
scripts).

``LoadTester`` picks one through ``live_view``: the dashboard inside an IPython kernel, nothing in a
script unless ``live=True`` (then the terminal line), nothing with ``live=False``.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

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
    if s.draining:
        parts[1] = f"plan done, draining {s.draining} in flight"
    if s.saturated:
        parts.append(f"TESTER SATURATED ({s.saturated})")
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

    def finish(self, run: Any = None, *, error: BaseException | None = None) -> str:
        """End of run (the same call as ``LiveDashboard.finish``): end the line."""
        self.close()
        return ""


def live_view(title: str, planned_s: float, *, interval_s: float = 0.5, force: bool = False) -> Any:
    """The live display for a run starting now, or None; never raises.

    Inside an IPython kernel: a ``LiveDashboard`` shown in the running cell. Elsewhere: a
    ``TerminalProgress`` on stderr when ``force`` (``LoadTester(live=True)``), else None.
    """
    try:
        from taskforge_perf.dashboard import LiveDashboard, in_kernel

        if in_kernel():
            from taskforge_perf.rendering import ensure_offline_renderer

            ensure_offline_renderer()  # Altair's default loads Vega from a CDN: blank offline
            return LiveDashboard(title=title, planned_s=planned_s, interval_s=interval_s)
        return TerminalProgress() if force else None
    except Exception:  # noqa: BLE001 - no widgets or no frontend: run without a live view
        return None
