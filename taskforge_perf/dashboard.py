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

import html
import sys
import time
from collections.abc import Callable
from typing import Any

from taskforge_perf.analysis import HEADLINE_COLUMNS
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


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f}"


def _dur(s: float) -> str:
    s = max(s, 0.0)
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    if s >= 60:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{s:.0f} s"


def _kinds(counts: dict[str, int]) -> str:
    kinds = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{_esc(k)} {v:,}" for k, v in kinds) if kinds else "none"


def snapshot_html(s: Snapshot, *, interval_s: float = 0.5, counts: LoadCounts | None = None) -> str:
    """The live figures of one snapshot as a small HTML block (the dashboard's body).

    Errors are load errors of the target only (``LoadCounts``: set-up outcomes apart, tester-side
    rows under "Not sent"); the rate is answered responses per second once two load snapshots
    were seen (requests per second before)."""
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
        (f"Load errors ({errors:,})", _kinds(counts.load_errors)),
    ]
    if counts.not_sent:
        rows.append((f"Not sent ({sum(counts.not_sent.values()):,})", _kinds(counts.not_sent)))
    if counts.setup:
        rows.append(("Auth outcomes at set-up (not load errors)", _kinds(counts.setup)))
    rows += [
        ("Open WebSocket connections", f"{s.ws_open:,}"),
        ("Tasks created / completed", f"{s.tasks_created:,} / {s.ws_completed:,}"),
    ]
    if s.late:
        rows.append(("Late starts (behind schedule)", f"{s.late:,}"))
    if s.saturated:
        rows.append(("Tester saturated (numbers include its own queueing)", _esc(s.saturated)))
    body = "".join(
        f"<tr><th style='text-align:left;padding:1px 12px 1px 0;font-weight:normal'>{_esc(k)}</th>"
        f"<td style='text-align:right;font-variant-numeric:tabular-nums'>{v}</td></tr>"
        for k, v in rows
    )
    return f"<table class='tfp-live'>{body}</table>"


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
    return (
        f"phase <b>{_esc(s.phase)}</b>: {_dur(s.phase_remaining_s)} left in phase · "
        f"{_dur(s.elapsed_s)} of {_dur(s.planned_s)} · {_dur(left)} left"
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
    ) -> None:
        import ipywidgets as w

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
        self.note = w.HTML(
            "<small>~ marks a streaming estimate over the last monitor interval; exact "
            "percentiles come from the recorded rows when the run ends.</small>"
        )
        self.box = w.VBox(
            [self.header, self.progress, self.status, self.stats, self.note],
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
        self.stats.value = snapshot_html(snap, interval_s=self.interval_s, counts=self.counts)

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


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def cell(col: str, v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.2%}" if col == "error_rate" else f"{v:,.2f}"
        if isinstance(v, int):
            return f"{v:,}"
        return _esc(v)

    head = "".join(f"<th>{_esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(c, r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table class='tfp-summary'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _chart(run: Any) -> Any:
    """Throughput over latency percentiles per window, from the recorded rows (exact)."""
    import altair as alt
    import polars as pl

    from taskforge_perf.charts import data_values, fit_window

    span = max(run.duration_s, 1.0)
    window = fit_window(span, max(span / 120, 0.5), 3)
    tl = run.timeline(window_s=window, by=None)  # answered/s, partial windows at their real length
    rps = data_values(tl.select("t_s", "rps"))
    lat = data_values(
        tl.select("t_s", "p50_ms", "p95_ms", "p99_ms")
        .unpivot(index="t_s", variable_name="percentile", value_name="ms")
        .with_columns(pl.col("percentile").str.replace("_ms", ""))
    )
    x = alt.X("t_s:Q", title="Time since start (s)")
    top = (
        alt.Chart(rps)
        .mark_line(color="#444")
        .encode(x=x, y=alt.Y("rps:Q", title="answered/s"))
        .properties(width=600, height=110, title=f"Throughput: answered requests/s ({window:g} s windows)")
    )
    bottom = (
        alt.Chart(lat)
        .mark_line()
        .encode(
            x=x,
            y=alt.Y("ms:Q", title="latency (ms)"),
            color=alt.Color("percentile:N", title=None, legend=alt.Legend(orient="right")),
        )
        .properties(width=600, height=130, title="Latency percentiles (exact, per window)")
    )
    return alt.vconcat(top, bottom).resolve_scale(color="independent")


def static_html(run: Any, *, title: str = "") -> str:
    """The end-of-run snapshot: headline figures, the per-endpoint summary, an inline SVG chart."""
    from taskforge_perf import analysis
    from taskforge_perf.rendering import chart_svg

    meta = run.meta
    counters = meta.get("counters") or {}
    h = analysis.headline(run.events)  # load errors only; not sent and auth outcomes apart
    errors = sum(h["errors"].values())
    head = (
        f"<p><b>taskforge-perf</b> · {_esc(title or run.name)} · run {_esc(meta.get('stopped'))}: "
        f"{run.duration_s:,.1f} s of load, {h['requests']:,} load requests "
        f"({h['answered']:,} answered), {errors:,} load errors"
        + (f" ({_kinds(h['errors'])})" if errors else "")
        + f", {counters.get('tasks_created', 0):,} tasks created"
    )
    ws = meta.get("ws")
    if ws:
        head += f", WebSocket: {counters.get('ws_completed', 0):,} tasks completed"
    head += f"; {run.events.height:,} requests in all with set-up and teardown"
    if h["not_sent"]:
        head += f"<br>Not sent (tester-side, not target errors): {_kinds(h['not_sent'])}"
    if h["auth_outcomes"]:
        head += f"<br>Auth outcomes at set-up/teardown (not load errors): {_kinds(h['auth_outcomes'])}"
    head += "</p>"
    warning = getattr(run, "generator_warning", lambda: None)()
    if warning:
        head += f"<p style='color:#b45309'><b>{_esc(warning)}</b></p>"
    summary = run.summary()
    cols = [c for c in HEADLINE_COLUMNS if c in summary.columns]
    table = _table(summary.select(cols).to_dicts(), cols) if summary.height else "<p>no requests</p>"
    try:
        svg = chart_svg(_chart(run)) if run.load_events().height else ""
    except Exception as exc:  # noqa: BLE001 - the table is still worth showing
        svg = f"<p>(chart unavailable: {_esc(exc)})</p>"
    style = (
        "<style>.tfp-summary{border-collapse:collapse;font-size:12px}"
        ".tfp-summary th,.tfp-summary td{padding:2px 8px;text-align:right;"
        "border-bottom:1px solid #ddd}.tfp-summary th:first-child,"
        ".tfp-summary td:first-child{text-align:left}</style>"
    )
    note = (
        "<p><small>Static snapshot of the live view; percentiles are exact (ms) over the "
        "recorded rows. Explore further with <code>run.summary()</code>, "
        "<code>run.charts</code>.</small></p>"
    )
    return f"<div class='tfp-snapshot'>{style}{head}{table}<div>{svg}</div>{note}</div>"
