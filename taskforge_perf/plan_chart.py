"""The planned load as an Altair chart (``StressPlan.chart``): level over time, phase bands."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import altair as alt

    from taskforge_perf.plan import StressPlan


def plan_chart(plan: StressPlan, step: float = 1.0) -> alt.LayerChart:
    """An Altair chart of the planned level over time with shaded, labelled phase bands."""
    try:
        import altair as alt
    except ImportError as e:  # pragma: no cover - altair is a dependency
        raise ImportError("plan.chart() needs altair: pip install altair") from e
    import polars as pl

    from taskforge_perf.chart_style import PALETTE, finish

    frame = plan.to_frame(step)
    bands = pl.DataFrame(
        {
            "phase": [p.name for p in plan.phases],
            "start": list(plan.boundaries),
            "end": [s + p.duration for s, p in zip(plan.boundaries, plan.phases, strict=True)],
            "band": [i % 2 for i in range(len(plan))],
        }
    )
    title = {"open": "rate (req/s)", "closed": "concurrency (users)"}.get(
        plan.model, "level (req/s or users)"
    )
    shade = (
        alt.Chart(bands)
        .mark_rect(opacity=0.12)
        .encode(
            x=alt.X("start:Q", title="seconds since plan start"),
            x2="end:Q",
            color=alt.Color("band:N", legend=None, scale=alt.Scale(range=["#9d9d9d", "#d8d8d8"])),
            tooltip=["phase:N", "start:Q", "end:Q"],
        )
    )
    labels = (
        alt.Chart(bands)
        .mark_text(baseline="top", align="left", dx=3, dy=4, fontSize=10, color="#555")
        .encode(x="start:Q", text="phase:N", y=alt.value(0))
    )
    line = (
        alt.Chart(frame)
        .mark_line(interpolate="linear", color=PALETTE["planned"])
        .encode(
            x="t:Q",
            y=alt.Y("level:Q", title=title),
            tooltip=["t:Q", "phase:N", "model:N", "level:Q", "websockets:Q"],
        )
    )
    layered = alt.layer(shade, line, labels).properties(title="Planned load", width=600)
    return finish(layered)  # type: ignore[no-any-return]
