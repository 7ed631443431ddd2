"""The one palette and label rules every chart of taskforge_perf uses.

Colours mean the same thing in every chart:

========== ========= ==============================================================
name       colour    used for
========== ========= ==============================================================
ok         #4c78a8   answered requests, open connections, the achieved rate
degraded   #f58518   dropped connections, late or not-sent work, response time
failed     #e45756   errors, failed connects, a failed gate
planned    #6b6b6b   the plan's asked level (dashed)
(category) CATEGORY  endpoints, task types, metrics: blues, greens, purples (never red/orange)
baseline   #9d9d9d   the baseline run of a comparison
candidate  #4c78a8   the candidate run of a comparison
========== ========= ==============================================================

Labels, legends and titles are never cut (Vega-Lite's default ``labelLimit`` of 180 px truncated
endpoint names: ``finish`` sets every limit to 0, i.e. none).
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

__all__ = [
    "DASHES",
    "PALETTE",
    "close_steps",
    "finish",
    "line_legend",
    "natural_key",
    "plan_bands",
    "planned_rate",
    "top_groups",
]

PALETTE: dict[str, str] = {
    "ok": "#4c78a8",
    "degraded": "#f58518",
    "failed": "#e45756",
    "planned": "#6b6b6b",
    "baseline": "#9d9d9d",
    "candidate": "#4c78a8",
}


#: Colours of categories that carry no judgement (endpoints, task types, metrics): no red, no
#: orange, which mean "failed" and "degraded".
CATEGORY = ["#4c78a8", "#72b7b2", "#54a24b", "#b279a2", "#9d755d", "#eeca3b", "#79706e", "#1f3b73", "#8cd17d"]

#: Dash patterns of lines (Vega ``strokeDash``): solid for what was measured, dashed for what was
#: asked or for the second measure of a chart (response time beside latency).
DASHES: dict[str, list[int]] = {"solid": [1, 0], "dashed": [6, 3]}


def line_legend(**kw: Any) -> Any:
    """A legend whose symbols are short line segments (``symbolType="stroke"``), wide enough to show
    a dash pattern: the legend of a line chart draws lines, not the dots Vega draws by default
    when a line has point markers or a ``strokeDash`` channel."""
    import altair as alt

    return alt.Legend(symbolType="stroke", symbolSize=500, symbolStrokeWidth=2, **kw)


#: One font for every chart, present both to vl-convert and to the browsers of this project's images.
FONT = "DejaVu Sans"


def subtitle_lines(text: str, width: int = 95) -> list[str]:
    """A long subtitle as several lines (Vega does not wrap; a long line would be cut)."""
    lines: list[str] = []
    for part in text.split("; "):
        if lines and len(lines[-1]) + len(part) + 2 <= width:
            lines[-1] += "; " + part
        else:
            lines.append(part)
    return lines


def finish(chart: Any) -> Any:
    """A top-level chart with no label, legend or title truncation, drawn offline.

    Also makes sure an offline renderer is active (unless the user chose one): a chart shown in a
    fresh kernel must not try to load Vega from a CDN.
    """
    from taskforge_perf.rendering import ensure_offline_renderer

    ensure_offline_renderer()
    return (
        # room around the plot: SVG text measured by vl-convert can render a little wider in a
        # browser, and a label past the edge of the SVG would be cut
        chart.configure(font=FONT, padding={"left": 30, "top": 5, "right": 90, "bottom": 5})
        .configure_range(category=CATEGORY)
        .configure_axis(labelLimit=0, titleLimit=0)
        .configure_legend(labelLimit=0, titleLimit=0, symbolLimit=0)
        .configure_title(limit=0, subtitleColor="#555")
        .configure_header(labelLimit=0, titleLimit=0)
    )


_NUM = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key putting ``user2`` before ``user10``."""
    return tuple(int(p) if p.isdigit() else p for p in _NUM.split(str(text)))


def plan_bands(meta: dict[str, Any] | None, events: Any = None) -> pl.DataFrame | None:
    """The plan's phases on the run clock (``name``, ``start_s``, ``end_s``), or None without a plan.

    Bands come from the plan (its phase durations, placed where the run started its load), never from
    the rows' first and last timestamps, which overlap when late answers spill into the next phase.
    """
    plan_d = (meta or {}).get("plan")
    if not plan_d:
        return None
    from taskforge_perf.plan import StressPlan

    plan = StressPlan.from_dict(plan_d)
    start_ns = (meta or {}).get("load_start_ns")
    t0 = float(start_ns) / 1e9 if start_ns is not None else 0.0
    return pl.DataFrame(
        {
            "name": [p.name for p in plan.phases],
            "start_s": [t0 + b for b in plan.boundaries],
            "end_s": [t0 + b + p.duration for b, p in zip(plan.boundaries, plan.phases, strict=True)],
        },
        schema={"name": pl.String, "start_s": pl.Float64, "end_s": pl.Float64},
    )


def planned_rate(meta: dict[str, Any] | None, step: float = 0.5) -> pl.DataFrame | None:
    """The plan's asked rate (req/s) on the run clock (``t_s``, ``rate``) over its open-model
    phases (a closed-model phase asks for users, not a rate: no line there); None without any."""
    plan_d = (meta or {}).get("plan")
    if not plan_d or plan_d.get("model") == "closed":
        return None
    from taskforge_perf.plan import StressPlan

    plan = StressPlan.from_dict(plan_d)
    start_ns = (meta or {}).get("load_start_ns")
    t0 = float(start_ns) / 1e9 if start_ns is not None else 0.0
    frame = plan.to_frame(step)
    out = frame.select(t_s=pl.col("t").cast(pl.Float64) + t0, rate=pl.col("rate").cast(pl.Float64))
    out = out.drop_nulls("rate")
    return out if out.height and out["rate"].max() else None  # rate=0 (sessions only): nothing asked


def top_groups(lf: pl.LazyFrame, by: str, top: int) -> tuple[pl.LazyFrame, int]:
    """Keep the ``top`` busiest groups of ``by``; the rest become one group named "other"."""
    counts = lf.group_by(by).agg(pl.len().alias("n")).collect().sort("n", by, descending=[True, False])
    if counts.height <= top:
        return lf, counts.height
    keep = counts[by].cast(pl.String).head(top).implode()
    col = pl.col(by).cast(pl.String)
    return lf.with_columns(pl.when(col.is_in(keep)).then(col).otherwise(pl.lit("other")).alias(by)), top + 1


def close_steps(df: pl.DataFrame, keys: list[str], w: float, end: float | None = None) -> pl.DataFrame:
    """Repeat each series' last row at ``t_s + w`` (at most ``end``): a step-after line then draws
    its last window (without it the last window is a lone vertex, invisible or a vertical stroke)."""
    if df.height == 0:
        return df
    last = df.sort("t_s").group_by(keys, maintain_order=True).last() if keys else df.sort("t_s").tail(1)
    t_end = pl.col("t_s") + w if end is None else pl.min_horizontal(pl.col("t_s") + w, pl.lit(end))
    return pl.concat([df, last.with_columns(t_end.alias("t_s")).select(df.columns)], how="vertical_relaxed")
