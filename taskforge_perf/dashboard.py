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
    overall = f"{_dur(s.elapsed_s)} of {_dur(s.planned_s)} · {_dur(left)} left"
    if abs(s.phase_remaining_s - left) < 0.5:  # the last (or only) phase: one countdown is enough
        return f"phase <b>{_esc(s.phase)}</b>: {overall}"
    return f"phase <b>{_esc(s.phase)}</b>: {_dur(s.phase_remaining_s)} left in phase · {overall}"


def trend_svg(points: list[tuple[float, float | None, float | None, float | None]], *, span: float) -> str:
    """Two small inline SVG sparklines over the run so far: answered/s (solid) against the asked
    rate (dashed, when known), and ~p95 latency. ``points``: (elapsed_s, answered/s, asked/s, p95)."""
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
    top_rate = max([v for _, v in rate + asked] or [0]) * 1.1
    top_p95 = max([v for _, v in p95] or [0]) * 1.1

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
    return (
        "<div class='tfp-trends'>"
        + box(
            f"Answered/s{asked_note}:",
            line(asked, top_rate, "#6b6b6b", "4 3") + line(rate, top_rate, "#4c78a8"),
            last_rate,
        )
        + box("~p95 latency:", line(p95, top_p95, "#f58518"), last_p95)
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
            if len(self.history) > 600:  # bounded: every other point of a long run
                self.history = self.history[::2]
            self.trends.value = trend_svg(self.history, span=snap.planned_s)

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
    """Answered/s against the plan's asked rate, over p95 latency and p95 response time per window,
    from the recorded rows (exact)."""
    import altair as alt
    import polars as pl

    from taskforge_perf.chart_style import PALETTE, finish, planned_rate
    from taskforge_perf.charts import data_values, fit_window

    span = max(run.duration_s, 1.0)
    window = fit_window(span, max(span / 120, 0.5), 3)
    lo, hi = run.meta.get("load_start_ns"), run.meta.get("load_end_ns")
    tl = run.timeline(window_s=window, by=None)  # answered/s, partial windows at their real length
    if lo is not None and hi is not None:
        from taskforge_perf import analysis

        tl = analysis.timeline(run.load_events(), window_s=window, by=None, start_s=lo / 1e9, end_s=hi / 1e9)
    rates = [tl.select("t_s", series=pl.lit("achieved"), rate=pl.col("rps"))]
    planned = planned_rate(run.meta)
    if planned is not None:
        rates.append(planned.select("t_s", series=pl.lit("planned"), rate="rate"))
    lat = data_values(
        tl.select("t_s", latency="p95_ms", **{"response time": pl.col("resp_p95_ms")}).unpivot(
            index="t_s", variable_name="measure", value_name="ms"
        )
    )
    x = alt.X("t_s:Q", title="Time since start (s)")
    domain = ["achieved", "planned"]
    top = (
        alt.Chart(data_values(pl.concat(rates, how="vertical_relaxed")))
        .mark_line(interpolate="step-after")
        .encode(
            x=x,
            y=alt.Y("rate:Q", title="req/s"),
            color=alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(domain=domain, range=[PALETTE["ok"], PALETTE["planned"]]),
            ),
            strokeDash=alt.StrokeDash(
                "series:N", legend=None, scale=alt.Scale(domain=domain, range=[[1, 0], [5, 3]])
            ),
        )
        .properties(width=600, height=110, title=f"Answered requests/s vs planned ({window:g} s windows)")
    )
    bottom = (
        alt.Chart(lat)
        .mark_line(interpolate="step-after")
        .encode(
            x=x,
            y=alt.Y("ms:Q", title="p95 (ms)"),
            color=alt.Color(
                "measure:N",
                title=None,
                scale=alt.Scale(
                    domain=["latency", "response time"], range=[PALETTE["ok"], PALETTE["degraded"]]
                ),
            ),
        )
        .properties(width=600, height=130, title="p95 latency and response time (exact, per window)")
    )
    return finish(alt.vconcat(top, bottom).resolve_scale(color="independent", strokeDash="independent"))


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
