"""The live dashboard of a run in a notebook (ipywidgets), fed by ``engine.monitor.Snapshot``.

``LoadTester`` shows one automatically when it runs inside an IPython kernel (``live=False``
turns it off). Updates are throttled (``min_interval``, default 0.25 s, on top of the monitor's
own interval) and cost a few tens of microseconds each, off the per-request path. When the run
ends the widgets are replaced by a static snapshot (an HTML summary table and an inline SVG chart)
so that the saved or exported notebook shows the result even where widgets cannot render
(exported HTML, offline).

>>> from taskforge_perf.dashboard import LiveDashboard
>>> dash = LiveDashboard(title="demo", show=False)
>>> dash.update(snapshot)       # doctest: +SKIP
>>> dash.finish(run)            # doctest: +SKIP
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from taskforge_perf.dashboard_static import _esc, _kinds, static_html
from taskforge_perf.engine.monitor import Snapshot
from taskforge_perf.live import LoadCounts

__all__ = ["LiveDashboard", "in_kernel", "snapshot_html", "static_html"]


def in_kernel() -> bool:
    """True when running inside an IPython kernel (Jupyter, nbclient), never importing IPython."""
    ipython = sys.modules.get("IPython")
    if ipython is None or "ipykernel" not in sys.modules:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - any failure means "not a kernel"
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f}"


def _dur(s: float) -> str:
    s = max(s, 0.0)
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    if s >= 60:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{s:.0f} s"


def snapshot_html(
    s: Snapshot,
    *,
    interval_s: float = 0.5,
    counts: LoadCounts | None = None,
    websockets: bool | None = None,
) -> str:
    """The live figures of one snapshot as a small HTML block (the dashboard's body).

    Errors are load errors of the target only (``LoadCounts``: set-up outcomes apart, tester-side
    rows under "Not sent"); the rate is answered responses per second once two load snapshots
    were seen (requests per second before). Rows that do not apply are left out: WebSocket rows
    only when connections were asked for (``websockets``; None: when any was seen)."""
    if counts is None:
        counts = LoadCounts()
        counts.update(s)
    errors = sum(counts.load_errors.values())
    rate = (
        ("Answered/s (last interval)", f"{counts.answered_rps:,.0f}")
        if counts.answered_rps is not None
        else ("Requests/s (last interval)", f"{s.rps:,.0f}")
    )
    rows = [
        rate,
        ("Requests", f"{s.requests:,} ({s.in_flight:,} in flight)"),
        (
            f"~p50 / ~p95 / ~p99 latency (streaming estimate, last {interval_s:g} s)",
            f"{_ms(s.approx_p50_ms)} / {_ms(s.approx_p95_ms)} / {_ms(s.approx_p99_ms)} ms",
        ),
        ("~p95 response time (latency + time behind schedule)", f"{_ms(s.approx_resp_p95_ms)} ms"),
        (f"Load errors ({errors:,})", _kinds(counts.load_errors)),
    ]
    not_sent = sum(counts.not_sent.values())
    rows.append((f"Not sent ({not_sent:,})", _kinds(counts.not_sent) if not_sent else "none"))
    if counts.setup:
        rows.append(("Auth outcomes at set-up (not load errors)", _kinds(counts.setup)))
    ws = websockets if websockets is not None else bool(s.ws_open or s.ws_completed)
    if ws:
        rows += [
            ("Open WebSocket connections", f"{s.ws_open:,}"),
            ("Tasks created / completed", f"{s.tasks_created:,} / {s.ws_completed:,}"),
        ]
    elif s.tasks_created:
        rows.append(("Tasks created (no WebSocket asked: completion not tracked)", f"{s.tasks_created:,}"))
    if s.late:
        rows.append(("Late starts (behind schedule: response time > latency)", f"{s.late:,}"))
    if s.saturated:
        rows.append(("Tester saturated (numbers include its own queueing)", _esc(s.saturated)))
    elif s.lag_p99_ms is not None or s.cpu is not None:
        lag = "–" if s.lag_p99_ms is None else f"{s.lag_p99_ms:,.1f} ms"
        cpu = "–" if s.cpu is None else f"{s.cpu:.0%} of a core"
        rows.append(("Generator health (event-loop lag p99 · CPU)", f"ok · {lag} · {cpu}"))
    body = "".join(
        f"<tr><th style='text-align:left;padding:1px 12px 1px 0;font-weight:normal'>{_esc(k)}</th>"
        f"<td style='text-align:right;font-variant-numeric:tabular-nums'>{v}</td></tr>"
        for k, v in rows
    )
    return f"<table class='tfp-live'>{body}</table>" + endpoints_html(s, interval_s=interval_s)


def endpoints_html(s: Snapshot, *, interval_s: float = 0.5) -> str:
    """The per-endpoint table of a snapshot: requests and target-side errors so far, ~p95 latency of
    the last interval (answered rows); empty before the load has sent anything."""
    if not s.endpoints:
        return ""
    cell = "style='text-align:right;padding:1px 0 1px 12px;font-variant-numeric:tabular-nums'"
    head = (
        "<tr><th style='text-align:left;font-weight:normal;color:#555'>endpoint</th>"
        f"<th {cell}>requests</th><th {cell}>errors</th><th {cell}>~p95 (last {interval_s:g} s)</th></tr>"
    )
    body = "".join(
        f"<tr><td style='padding-right:12px'>{_esc(name)}</td><td {cell}>{n:,}</td>"
        f"<td {cell}>{errs:,}</td><td {cell}>{_ms(p95)} ms</td></tr>"
        for name, (n, errs, p95) in s.endpoints.items()
    )
    return f"<table class='tfp-endpoints' style='margin-top:6px'>{head}{body}</table>"


def status_text(s: Snapshot) -> str:
    """One line: phase, time left in the phase and in the run."""
    if s.phase == "setup":
        return "setting up users (signup / login) ..."
    if s.phase == "teardown":
        return f"finishing: {s.elapsed_s:.0f} s of load done, logging users out ..."
    if s.draining:
        return (
            f"plan done ({_dur(s.planned_s)}): draining {s.draining:,} in flight "
            "(cancelled when the grace runs out) ..."
        )
    left = max(s.planned_s - s.elapsed_s, 0.0)
    overall = f"{_dur(s.elapsed_s)} of {_dur(s.planned_s)} · {_dur(left)} left"
    if abs(s.phase_remaining_s - left) < 0.5:  # the last (or only) phase: one countdown is enough
        return f"phase <b>{_esc(s.phase)}</b>: {overall}"
    return f"phase <b>{_esc(s.phase)}</b>: {_dur(s.phase_remaining_s)} left in phase · {overall}"


def trend_svg(
    points: list[tuple[float, float | None, float | None, float | None]],
    *,
    span: float,
    resp: list[tuple[float, float]] | None = None,
) -> str:
    """Two small inline SVG sparklines over the run so far: answered/s (solid) against the asked
    rate (dashed, when known), and ~p95 latency (solid) with ~p95 response time (dashed, ``resp``:
    (elapsed_s, ms) points). ``points``: (elapsed_s, answered/s, asked/s, p95)."""
    if len(points) < 2:
        return ""
    w, h, pad = 340, 56, 2
    t_max = max(span, points[-1][0], 1e-9)

    def line(values: list[tuple[float, float]], top: float, colour: str, dash: str = "") -> str:
        if len(values) < 2 or top <= 0:
            return ""
        xy = " ".join(
            f"{pad + t / t_max * (w - 2 * pad):.1f},{h - pad - v / top * (h - 2 * pad):.1f}"
            for t, v in values
        )
        extra = f" stroke-dasharray='{dash}'" if dash else ""
        return f"<polyline fill='none' stroke='{colour}' stroke-width='1.5'{extra} points='{xy}'/>"

    rate = [(t, r) for t, r, _, _ in points if r is not None]
    asked = [(t, a) for t, _, a, _ in points if a is not None]
    p95 = [(t, p) for t, _, _, p in points if p is not None]
    resp = resp or []
    top_rate = max([v for _, v in rate + asked] or [0]) * 1.1
    top_p95 = max([v for _, v in p95 + resp] or [0]) * 1.1

    def box(title: str, body: str, last: str) -> str:
        return (
            f"<div style='display:inline-block;margin-right:14px;font-size:11px;color:#444'>{title} "
            f"<b>{last}</b><br><svg width='{w}' height='{h}' "
            "style='background:#fafafa;border:1px solid #eee'>"
            f"{body}</svg></div>"
        )

    last_rate = f"{rate[-1][1]:,.0f}/s" if rate else "–"
    asked_note = f" vs asked {asked[-1][1]:,.0f}/s (dashed)" if asked else ""
    last_p95 = f"{p95[-1][1]:,.1f} ms" if p95 else "–"
    if resp:
        last_p95 += f" · response time {resp[-1][1]:,.1f} ms (dashed)"
    return (
        "<div class='tfp-trends'>"
        + box(
            f"Answered/s{asked_note}:",
            line(asked, top_rate, "#6b6b6b", "4 3") + line(rate, top_rate, "#4c78a8"),
            last_rate,
        )
        + box(
            "~p95 latency:",
            line(resp, top_p95, "#f58518", "4 3") + line(p95, top_p95, "#f58518"),
            last_p95,
        )
        + "</div>"
    )


class LiveDashboard:
    """An ipywidgets view of a running load: a listener of ``Snapshot`` objects.

    ``update(snapshot)`` redraws at once (tests drive it directly); calling the dashboard (as the
    monitor does) applies the throttle first. ``finish(run)`` swaps the widgets for a static
    HTML + SVG snapshot. ``show=False`` builds the widgets without displaying them.
    """

    def __init__(
        self,
        *,
        title: str = "",
        planned_s: float = 0.0,
        interval_s: float = 0.5,
        min_interval: float = 0.25,
        show: bool = True,
        clock: Callable[[], float] = time.monotonic,
        plan: Any = None,
        websockets: bool | None = None,
    ) -> None:
        import ipywidgets as w

        self.plan = plan  # a StressPlan: the asked rate drawn against the achieved one
        self.websockets = websockets
        self.history: list[tuple[float, float | None, float | None, float | None]] = []
        self.resp_history: list[tuple[float, float]] = []  # ~p95 response time (elapsed_s, ms)

        self.title = title
        self.interval_s = interval_s
        self.min_interval = min_interval
        self.clock = clock
        self.updates = 0
        self.last: Snapshot | None = None
        self.finished = False
        self._last_t = -1e18
        self.counts = LoadCounts()
        self.header = w.HTML(f"<b>taskforge-perf</b> · {_esc(title)} · <i>live</i>")
        self.progress = w.FloatProgress(
            value=0.0,
            min=0.0,
            max=max(planned_s, 1e-9),
            description="",
            bar_style="info",
            layout=w.Layout(width="100%"),
        )
        self.status = w.HTML("starting ...")
        self.stats = w.HTML("")
        self.trends = w.HTML("")
        self.note = w.HTML(
            "<small>~ marks a streaming estimate over the last monitor interval; exact "
            "percentiles come from the recorded rows when the run ends.</small>"
        )
        self.box = w.VBox(
            [self.header, self.progress, self.status, self.trends, self.stats, self.note],
            layout=w.Layout(max_width="760px"),
        )
        self._handle: Any = None
        if show:
            self.show()

    def show(self) -> None:
        """Display the widgets in the current cell (a display handle the end result replaces)."""
        from IPython.display import display

        self._handle = display(self.box, display_id=True)

    def __call__(self, snap: Snapshot) -> None:
        now = self.clock()
        if now - self._last_t < self.min_interval:
            self.last = snap
            if snap.phase == "setup":
                self.counts.update(snap)  # every set-up snapshot: its errors are auth outcomes
            return
        self._last_t = now
        self.update(snap)

    def update(self, snap: Snapshot) -> None:
        """Redraw the widgets from one snapshot (no throttling)."""
        self.last = snap
        self.updates += 1
        self.counts.update(snap)
        if snap.planned_s > 0 and self.progress.max != snap.planned_s:
            self.progress.max = snap.planned_s
        self.progress.value = min(max(snap.elapsed_s, 0.0), self.progress.max)
        self.status.value = status_text(snap)
        self.stats.value = snapshot_html(
            snap, interval_s=self.interval_s, counts=self.counts, websockets=self.websockets
        )
        if snap.phase not in ("setup", "teardown"):
            self.history.append(
                (snap.elapsed_s, self.counts.answered_rps, self._asked(snap), snap.approx_p95_ms)
            )
            if snap.approx_resp_p95_ms is not None:
                self.resp_history.append((snap.elapsed_s, snap.approx_resp_p95_ms))
            if len(self.history) > 600:  # bounded: every other point of a long run
                self.history = self.history[::2]
                self.resp_history = self.resp_history[::2]
            self.trends.value = trend_svg(self.history, span=snap.planned_s, resp=self.resp_history)

    def _asked(self, snap: Snapshot) -> float | None:
        """The plan's asked rate now (open-model phases), or None."""
        if self.plan is None:
            return None
        try:
            level = self.plan.at(max(snap.elapsed_s, 0.0))
        except Exception:  # noqa: BLE001 - a display must never break the run
            return None
        return None if level is None else level.rate

    def finish(self, run: Any = None, *, error: BaseException | None = None) -> str:
        """Replace the live view with a static snapshot of ``run``; returns the HTML shown."""
        if self.finished:
            return ""
        self.finished = True
        try:
            body = static_html(run, title=self.title) if run is not None else self._stopped(error)
        except Exception as exc:  # noqa: BLE001 - a display must never break the caller
            body = f"<p>taskforge-perf: could not draw the run summary ({_esc(exc)})</p>"
        try:
            if self._handle is not None:
                from IPython.display import HTML

                self._handle.update(HTML(body))
            self.box.close()
        except Exception:  # noqa: BLE001 - the run's result matters more than its display
            pass
        return body

    def _stopped(self, error: BaseException | None) -> str:
        why = "cancelled" if error is None else f"{type(error).__name__}: {error}"
        last = snapshot_html(self.last, interval_s=self.interval_s, counts=self.counts) if self.last else ""
        return f"<p><b>taskforge-perf</b> · {_esc(self.title)}: run stopped ({_esc(why)})</p>{last}"
