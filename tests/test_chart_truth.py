"""Each chart draws what its title says: rendered with vl-convert, and its spec checked."""

from __future__ import annotations

import re
from typing import Any

import altair as alt
import polars as pl
import pytest
import vl_convert as vlc

import taskforge_perf as tfp
from taskforge_perf import charts as C
from taskforge_perf.assessment import assess
from taskforge_perf.chart_style import PALETTE, natural_key, plan_bands, planned_rate
from taskforge_perf.compare_charts import delta_chart
from taskforge_perf.synthetic import synthetic_events, synthetic_ws_events

pytestmark = pytest.mark.timeout(120)


def nodes(spec: Any, key: str) -> list[Any]:
    """Every value of ``key`` anywhere in a nested spec."""
    out, stack = [], [spec]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            if key in n:
                out.append(n[key])
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
    return out


def inline(spec: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [d["values"] for d in nodes(spec, "data") if isinstance(d, dict) and "values" in d]


def render(chart: Any) -> str:
    svg = vlc.vegalite_to_svg(chart.to_dict())
    assert svg.startswith("<svg") and len(svg) > 1_000
    return svg


def no_truncation(spec: dict[str, Any]) -> None:
    cfg = spec["config"]
    assert cfg["axis"]["labelLimit"] == 0 and cfg["legend"]["labelLimit"] == 0
    assert cfg["title"]["limit"] == 0


META = {
    "load_start_ns": 0,
    "load_end_ns": int(25e9),
    "plan": {
        "model": "open",
        "phases": [
            {"name": f"step{i}", "duration": 5, "rate": 20 * i, "concurrency": None} for i in range(1, 6)
        ],
    },
}


@pytest.fixture(scope="module")
def run() -> tfp.Run:
    # the rows of each step run late into the next: bands from the rows would overlap
    phases = tuple((f"step{i}", 5.0, float(i)) for i in range(1, 6))
    ev = synthetic_events(3_000, seed=5, phases=phases, users=12)
    ev = ev.with_columns(t_end=pl.col("t_end") + int(2e9))
    return tfp.Run(ev, synthetic_ws_events(2_000, connections=20, drops=3, duration_s=25, seed=2), META)


def test_task_hist_bars_have_y_and_y2() -> None:
    chart = C.task_latency_hist(synthetic_ws_events(5_000, connections=50, duration_s=60, seed=3))
    spec = chart.to_dict()
    enc = spec["encoding"]
    assert {"x", "x2", "y", "y2"} <= set(enc) and spec["mark"]["type"] == "bar"
    rows = inline(spec)[0]
    assert min(r["y0"] for r in rows) == 0  # stacks start at 0: no floating dashes, no negative axis
    for r in rows:
        assert r["y1"] - r["y0"] == r["tasks"]
    tops: dict[float, int] = {}
    for r in rows:
        tops[r["start_s"]] = max(tops.get(r["start_s"], 0), r["y1"])
    totals = pl.DataFrame(rows).group_by("start_s").agg(pl.col("tasks").sum())
    assert all(tops[s] == n for s, n in totals.iter_rows())
    no_truncation(spec)
    render(chart)


def test_throughput_last_partial_window_is_not_a_collapse() -> None:
    ev = synthetic_events(2_100, seed=1, phases=(("flat", 10.5, 1.0),), error_fraction=0.0, lateness_ms=0)
    end = float(ev["t_end"].max()) / 1e9
    chart = C.throughput(ev, start_s=0.0, end_s=end)
    spec = chart.to_dict()
    achieved = [r for v in inline(spec) for r in v if r.get("series") == "achieved"]
    windows = sorted(achieved, key=lambda r: r["t_s"])
    last, closing = windows[-2], windows[-1]  # the last window, then its end (step-after line)
    mid = sorted(r["rate"] for r in achieved)[len(achieved) // 2]
    assert last["t_s"] == 10.0 and closing["t_s"] == pytest.approx(end) and closing["rate"] == last["rate"]
    assert last["rate"] > 0.8 * mid  # scaled by its real length (~0.5 s), not by a full second
    # a sliver (under half a window) at the end is dropped, not drawn as a collapse or a spike
    sliver = C.throughput(ev, start_s=0.0, end_s=10.2).to_dict()
    drawn = sorted(
        (r for v in inline(sliver) for r in v if r.get("series") == "achieved"), key=lambda r: r["t_s"]
    )
    assert drawn[-2]["t_s"] == 9.0 and drawn[-1]["t_s"] == 10.0 and drawn[-1]["rate"] == drawn[-2]["rate"]
    # without a known end the partial last window is dropped rather than drawn as a collapse
    unknown = [r for v in inline(C.throughput(ev).to_dict()) for r in v if r.get("series") == "achieved"]
    unknown.sort(key=lambda r: r["t_s"])
    assert unknown[-1]["t_s"] == 10.0 and unknown[-2]["t_s"] == 9.0  # window 9-10 is the last drawn
    assert unknown[-1]["rate"] == unknown[-2]["rate"]
    render(chart)


def test_throughput_errors_have_their_own_axis_and_plan_overlay(run: tfp.Run) -> None:
    spec = run.charts.throughput().to_dict()
    panels = spec["vconcat"]
    assert len(panels) == 2
    titles = [t["title"] for t in nodes(spec, "y") if isinstance(t, dict) and "title" in t]
    assert "Answered (req/s)" in titles and "Errors (req/s)" in titles
    series = {r.get("series") for v in inline(spec) for r in v}
    assert {"achieved", "planned"} <= series
    planned = [r for v in inline(spec) for r in v if r.get("series") == "planned"]
    assert {r["rate"] for r in planned} == {20.0, 40.0, 60.0, 80.0, 100.0}
    assert PALETTE["failed"] in str(spec)
    no_truncation(spec)
    render(run.charts.throughput())


def test_phase_bands_come_from_the_plan(run: tfp.Run) -> None:
    bands = plan_bands(run.meta)
    assert bands is not None
    assert bands["end_s"].to_list()[:-1] == bands["start_s"].to_list()[1:]  # adjacent, no overlap
    assert bands["end_s"].max() == 25.0  # the plan's 25 s, not the last row's answer
    spec = run.charts.latency_over_time().to_dict()
    drawn = [r for v in inline(spec) for r in v if "start_s" in r]
    assert max(r["end_s"] for r in drawn) == 25.0
    assert sorted({(r["start_s"], r["end_s"]) for r in drawn}) == list(
        zip(bands["start_s"], bands["end_s"], strict=True)
    )
    render(run.charts.latency_over_time())


def test_latency_over_time_top_n_and_one_panel_per_measure() -> None:
    ev = synthetic_events(20_000, seed=2)
    # ten endpoints: the chart keeps the 3 busiest and folds the rest into "other"
    ev = ev.with_columns(endpoint=pl.format("ep{}", pl.col("user").cast(pl.String).str.slice(8, 1)))
    spec = C.latency_over_time(ev, top=3).to_dict()
    assert len(spec["vconcat"]) == 2  # latency, response time: no dashed twins in one panel
    names = {r["endpoint"] for v in inline(spec) for r in v if "endpoint" in r}
    assert len(names) == 4 and "other" in names
    assert "strokeDash" not in str(spec)
    render(C.latency_over_time(ev, top=3))


def test_percentile_axis_stops_where_the_data_does() -> None:
    ev = synthetic_events(1_381, seed=4)
    spec = C.percentiles(ev).to_dict()
    n = ev.filter(tfp.schema.answered_expr()).height
    tails = [r["inverse_tail"] for v in inline(spec) for r in v]
    assert max(tails) <= n  # n·(1-q) >= 1: no p99.99 or p99.999 from 1,381 rows
    ticks = [t for t in nodes(spec, "values") if isinstance(t, list) and t and isinstance(t[0], int | float)]
    assert ticks and all(max(t) <= n for t in ticks)  # the axis' tick values (not inline data rows)
    render(C.percentiles(ev))


def test_compare_colours_are_baseline_and_candidate() -> None:
    cmp = tfp.compare("data/samples/baseline", "data/samples/candidate")
    spec = cmp.chart().to_dict()
    scale = [s for s in nodes(spec, "scale") if isinstance(s, dict) and "domain" in s]
    assert {
        "domain": ["baseline", "candidate"],
        "range": [PALETTE["baseline"], PALETTE["candidate"]],
    } in scale
    render(cmp.chart())


def test_delta_chart_clamps_outliers_and_marks_them() -> None:
    cmp = tfp.compare("data/samples/baseline", "data/samples/candidate")
    t = cmp.table()
    # one absurd interval (as a run of a handful of samples gives): it must not set the scale
    wild = t.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(5.1)
        .otherwise(pl.col("p95_rel_ci_high"))
        .alias("p95_rel_ci_high")
    )
    spec = delta_chart(cmp, table=wild).to_dict()
    domains = [s["domain"] for s in nodes(spec, "scale") if isinstance(s, dict) and "domain" in s]
    edge = max(abs(x) for d in domains for x in d if isinstance(x, (int, float)))
    assert edge <= 100 and edge >= cmp.gate.max_regression * 100
    rows = [r for v in inline(spec) for r in v if "clamped" in r]
    assert any(r["clamped"] for r in rows) and all(r["hi"] is None or abs(r["hi"]) <= edge for r in rows)
    assert "clipped" in str(spec)
    assert all(r["mark_x"] is not None for r in rows if r["clamped"])  # every clipped value marked
    render(cmp.delta_chart())


def test_ws_connections_palette(run: tfp.Run) -> None:
    spec = run.charts.ws_connections().to_dict()
    scale = [
        s
        for s in nodes(spec, "scale")
        if isinstance(s, dict) and s.get("domain") == ["open", "dropped", "failed"]
    ]
    assert scale and scale[0]["range"] == [PALETTE["ok"], PALETTE["degraded"], PALETTE["failed"]]
    render(run.charts.ws_connections())


def test_heatmap_bounded_and_natural_user_order() -> None:
    ev = synthetic_events(60_000, seed=6, users=500)
    chart = C.user_endpoint_heatmap(ev, top=40)
    spec = chart.to_dict()
    order = spec["encoding"]["y"]["sort"]
    assert len(order) == 40 and order == sorted(order, key=natural_key)
    assert natural_key("user2") < natural_key("user10")
    svg = render(chart)
    height = float(re.search(r'height="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    assert height < 1_000  # 500 users once made a 10,179 px tall chart


def test_plan_chart_and_labels(run: tfp.Run) -> None:
    spec = run.plan.chart().to_dict()
    no_truncation(spec)
    render(run.plan.chart())


def test_planned_rate_only_for_open_plans() -> None:
    assert planned_rate({"plan": {**META["plan"], "model": "closed"}}) is None
    assert planned_rate({}) is None


def test_every_chart_switches_to_an_offline_renderer(run: tfp.Run) -> None:
    before = alt.renderers.active
    try:
        alt.renderers.enable("default")
        run.charts.percentiles()
        assert alt.renderers.active == "svg"
        alt.renderers.enable("html")  # the user's own choice is kept
        run.charts.throughput()
        assert alt.renderers.active == "html"
    finally:
        alt.renderers.enable(before)


def test_other_chart_entry_points_switch_to_offline_too() -> None:
    before = alt.renderers.active
    try:
        for make in (
            lambda: tfp.compare("data/samples/baseline", "data/samples/candidate").delta_chart(),
            lambda: tfp.StressPlan.preset("dev").chart(),
            lambda: tfp.compare_series(
                {"a": "data/samples/baseline", "b": "data/samples/baseline-2", "c": "data/samples/candidate"}
            ).chart(),
        ):
            alt.renderers.enable("default")
            make()
            assert alt.renderers.active == "svg"
    finally:
        alt.renderers.enable(before)


# -- legends of dashed lines draw dashed line segments, not dots (issue 16) ----------------------
_LEGEND = re.compile(r"aria-label=\"Symbol legend(?: titled '([^']*)')?")
_SYMBOL = re.compile(r'role-legend-symbol" pointer-events="none"><path ([^>]*)/>')
_LABEL = re.compile(r'role-legend-label" pointer-events="none"><text [^>]*>([^<]*)</text>')


def legends(svg: str) -> dict[str, dict[str, dict[str, str]]]:
    """Each legend of a rendered chart: {title (or #k untitled): {label: the symbol's SVG attributes}}."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    starts = [(m.start(), m.group(1)) for m in _LEGEND.finditer(svg)]
    for k, (at, title) in enumerate(starts):
        chunk = svg[at : starts[k + 1][0] if k + 1 < len(starts) else len(svg)]
        symbols = [dict(re.findall(r'([\w-]+)="([^"]*)"', s)) for s in _SYMBOL.findall(chunk)]
        out[title or f"#{k}"] = dict(zip(_LABEL.findall(chunk), symbols, strict=True))
    return out


def is_segment(symbol: dict[str, str]) -> bool:
    """A horizontal line drawn with a visible stroke (not a circle, not a transparent outline)."""
    return bool(re.fullmatch(r"M-[\d.]+,0L[\d.]+,0", symbol["d"])) and symbol.get("stroke") not in (
        None,
        "transparent",
    )


def test_percentile_legend_draws_the_measures_as_solid_and_dashed_lines() -> None:
    ev = synthetic_events(2_000, seed=7)
    chart = C.percentiles(ev)
    spec = chart.to_dict()
    dash = nodes(spec, "strokeDash")
    assert dash and dash[0]["legend"]["symbolType"] == "stroke"
    assert dash[0]["scale"] == {"domain": ["latency", "response time"], "range": [[1, 0], [6, 3]]}
    got = legends(render(chart))
    assert set(got) == {"series", "measure"}
    measure = got["measure"]
    assert set(measure) == {"latency", "response time"} and all(is_segment(s) for s in measure.values())
    assert (
        measure["latency"]["stroke-dasharray"] == "1,0"
        and measure["response time"]["stroke-dasharray"] == "6,3"
    )
    assert is_segment(got["series"]["all"])
    # one measure: no dash legend at all, and the series legend still draws lines
    one = C.percentiles(ev, measure="latency")
    assert not nodes(one.to_dict(), "strokeDash")
    single = legends(render(one))
    assert set(single) == {"series"} and is_segment(single["series"]["all"])
    cmp = legends(render(tfp.compare("data/samples/baseline", "data/samples/candidate").chart()))
    assert set(cmp["run"]) == {"baseline", "candidate"} and all(is_segment(s) for s in cmp["run"].values())
    assert cmp["run"]["baseline"]["stroke"] == PALETTE["baseline"]


def test_throughput_legend_draws_planned_dashed(run: tfp.Run) -> None:
    got = legends(render(run.charts.throughput()))
    assert list(got) == ["rate"]  # colour and dash share one legend
    rate = got["rate"]
    assert is_segment(rate["achieved"]) and is_segment(rate["planned"])
    assert rate["planned"]["stroke-dasharray"] == "6,3" and rate["planned"]["stroke"] == PALETTE["planned"]
    assert rate["achieved"]["stroke-dasharray"] == "1,0" and rate["achieved"]["stroke"] == PALETTE["ok"]


def test_dashboard_snapshot_legend_draws_planned_dashed() -> None:
    from taskforge_perf.dashboard_static import _chart

    got = legends(render(_chart(tfp.load_run("data/samples/baseline"))))
    rate = next(v for v in got.values() if "planned" in v)
    assert rate["planned"]["stroke-dasharray"] == "6,3" and is_segment(rate["planned"])
    assert rate["achieved"]["stroke-dasharray"] == "1,0" and is_segment(rate["achieved"])


def test_throughput_counts_answers_when_they_arrive() -> None:
    """A target that serves 100 req/s, asked 40 then 300 req/s: the chart's achieved rate is what
    it delivered (about 100 req/s, as the assessment says), not the rate requests were sent at."""
    plan = tfp.StressPlan([tfp.Phase("steady", 2, rate=40), tfp.Phase("overload", 1, rate=300)])
    rows, free = [], 0.0
    for t in plan.arrival_times():
        free = max(t, free) + 0.01  # one server, 10 ms per request
        phase = "steady" if t < 2 else "overload"
        rows.append({"t_intended": int(t * 1e9), "t_start": int(t * 1e9), "t_end": int(free * 1e9),
                     "status": 200, "phase": phase, "endpoint": "GET /health"})  # fmt: skip
    ev = pl.DataFrame(
        [{k: r.get(k) for k in tfp.schema.HTTP_SCHEMA} for r in rows], schema=tfp.schema.HTTP_SCHEMA
    )
    end = free
    achieved = [
        r
        for v in inline(C.throughput(ev, start_s=0.0, end_s=end).to_dict())
        for r in v
        if r.get("series") == "achieved"
    ]
    rate = {r["t_s"]: r["rate"] for r in achieved}
    assert rate[1.0] == pytest.approx(40, abs=1)
    assert rate[2.0] == pytest.approx(100, abs=1) and rate[3.0] == pytest.approx(100, abs=1)  # not 300
    a = assess(plan, ev, plan_start_s=0.0)
    assert a["achieved_rps"][1] == pytest.approx(rate[2.0], abs=1)  # chart and assessment agree
