"""The end-of-run view of the live dashboard: a static HTML summary and an inline SVG chart that
survive a saved notebook and its HTML export (widgets do not)."""

from __future__ import annotations

import html
from typing import Any

from taskforge_perf.analysis import HEADLINE_COLUMNS

__all__ = ["static_html"]


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _kinds(counts: dict[str, int]) -> str:
    kinds = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{_esc(k)} {v:,}" for k, v in kinds) if kinds else "none"


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

    from taskforge_perf.chart_style import DASHES, PALETTE, finish, line_legend, planned_rate
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
                legend=line_legend(),
            ),
            strokeDash=alt.StrokeDash(  # same field and title: one legend, "planned" drawn dashed
                "series:N",
                title=None,
                legend=line_legend(),
                scale=alt.Scale(domain=domain, range=[DASHES["solid"], DASHES["dashed"]]),
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
