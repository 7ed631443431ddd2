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
from taskforge_perf.schema import ANSWERED_ERRORS, TESTER_SIDE_KINDS

_SETUP = "setup"


class LoadCounts:
    """Headline counts of the load from successive snapshots (the same classes as ``summary``).

    The engine's live counters hold every row, set-up included. Errors counted while the phase
    is "setup" (a 409 on signing up an existing user, ...) are auth outcomes, kept apart in
    ``setup``; ``load_errors`` holds the target-side errors counted since (tester-side kinds go to
    ``not_sent``); ``answered_rps`` is answered responses per second between the last two
    snapshots (requests minus target failures and tester-side rows). Counts are taken at snapshot
    times, so a set-up error in the last interval before the load starts may be counted as load.
    """

    def __init__(self) -> None:
        self.setup: dict[str, int] = {}
        self.load_errors: dict[str, int] = {}
        self.not_sent: dict[str, int] = {}
        self.answered_rps: float | None = None
        self._setup_requests = 0
        self._last: tuple[float, int] | None = None

    def update(self, s: Snapshot) -> None:
        """Account for one snapshot."""
        if s.phase == _SETUP:
            self.setup = {k: v for k, v in s.errors.items() if v}
            self._setup_requests = s.requests
        load = {k: v - self.setup.get(k, 0) for k, v in s.errors.items()}
        self.not_sent = {k: v for k, v in load.items() if v > 0 and k in TESTER_SIDE_KINDS}
        self.load_errors = {k: v for k, v in load.items() if v > 0 and k not in TESTER_SIDE_KINDS}
        unanswered = sum(v for k, v in s.errors.items() if k not in ANSWERED_ERRORS)
        answered = s.requests - unanswered
        if s.phase == _SETUP:
            return
        if self._last is not None and s.elapsed_s > self._last[0]:
            self.answered_rps = max(answered - self._last[1], 0) / (s.elapsed_s - self._last[0])
        self._last = (s.elapsed_s, answered)


def format_snapshot(s: Snapshot, counts: LoadCounts | None = None, *, width: int = 119) -> str:
    """One line: elapsed/planned, phase, rps, approximate percentiles, load errors, not sent,
    tasks, sockets (with ``counts``: answered/s and load errors only, set-up outcomes apart)."""

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    if counts is None:
        counts = LoadCounts()
        counts.update(s)
    errors = sum(counts.load_errors.values())
    rate = (
        f"{counts.answered_rps:.0f} answered/s" if counts.answered_rps is not None else f"{s.rps:.0f} req/s"
    )
    parts = [
        f"{s.elapsed_s:5.1f}/{s.planned_s:.0f}s",
        f"{s.phase} ({s.phase_remaining_s:.0f}s left)",
        rate,
        f"~p50/95/99 {ms(s.approx_p50_ms)}/{ms(s.approx_p95_ms)}/{ms(s.approx_p99_ms)} ms",
        f"{s.requests} req, {errors} err" + (f", {s.in_flight} in flight" if s.in_flight else ""),
    ]
    if s.tasks_created:
        parts.append(f"{s.tasks_created} tasks")
    if counts.not_sent:
        parts.append("not sent: " + ", ".join(f"{v} {k}" for k, v in counts.not_sent.items()))
    if s.ws_open or s.ws_completed:
        parts.append(f"{s.ws_open} ws, {s.ws_completed} done")
    if s.late:
        parts.append(f"{s.late} late")
    if s.draining:
        parts[1] = f"plan done, draining {s.draining} in flight"
    if s.saturated:
        parts.append("TESTER SATURATED")  # the reason is in the run's warning at the end
    line = " | ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


class TerminalProgress:
    """Rewrites one progress line on a terminal (a plain line per update when not a TTY)."""

    def __init__(self, stream: TextIO | None = None, *, every: float = 1.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self._last = -1e9
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.counts = LoadCounts()

    def __call__(self, snap: Snapshot) -> None:
        if snap.phase == _SETUP:
            self.counts.update(snap)  # every set-up snapshot: its errors are auth outcomes
        if snap.elapsed_s - self._last < self.every:
            return
        self._last = snap.elapsed_s
        if snap.phase != _SETUP:
            self.counts.update(snap)
        line = format_snapshot(snap, self.counts)
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


def live_view(
    title: str,
    planned_s: float,
    *,
    interval_s: float = 0.5,
    force: bool = False,
    plan: Any = None,
    websockets: bool | None = None,
) -> Any:
    """The live display for a run starting now, or None; never raises.

    Inside an IPython kernel: a ``LiveDashboard`` shown in the running cell. Elsewhere: a
    ``TerminalProgress`` on stderr when ``force`` (``LoadTester(live=True)``), else None.
    """
    try:
        from taskforge_perf.dashboard import LiveDashboard, in_kernel

        if in_kernel():
            from taskforge_perf.rendering import ensure_offline_renderer

            ensure_offline_renderer()  # Altair's default loads Vega from a CDN: blank offline
            return LiveDashboard(
                title=title, planned_s=planned_s, interval_s=interval_s, plan=plan, websockets=websockets
            )
        return TerminalProgress() if force else None
    except Exception:  # noqa: BLE001 - no widgets or no frontend: run without a live view
        return None
