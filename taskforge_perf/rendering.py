"""Offline chart rendering for notebooks and reports: Altair as inline SVG drawn by vl-convert.

Altair 6's default renderer loads Vega from a CDN (blank without internet) and JupyterLab 4.6's
built-in Vega renderer only knows Vega-Lite 3-5. The default set up here draws every chart to SVG
in the kernel with vl-convert (no JavaScript, no network): it shows in JupyterLab, in VS Code, in
nbconvert's HTML export and in an e-mailed report alike. The price is interactivity (tooltips,
zoom); ``setup_notebook("interactive")`` keeps it by inlining the Vega bundle (~880 KB) into every
chart output instead.

>>> import taskforge_perf as tfp
>>> tfp.setup_notebook()        # doctest: +SKIP
'svg'
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["RENDERERS", "chart_svg", "setup_notebook"]

Renderer = Literal["svg", "interactive", "png"]
#: The renderers ``setup_notebook`` accepts.
RENDERERS: tuple[str, ...] = ("svg", "interactive", "png")


def setup_notebook(renderer: Renderer = "svg") -> str:
    """Make Altair charts render offline in this kernel; returns the renderer's name.

    ``"svg"`` (default): vl-convert draws each chart to inline SVG. ``"interactive"``: HTML with the
    Vega bundle inlined into each output (tooltips work; ~880 KB per chart). ``"png"``: a raster
    image. Call it once at the top of a notebook; nothing is changed at import time.
    """
    import altair as alt

    if renderer == "svg":
        alt.renderers.enable("svg")
    elif renderer == "interactive":
        alt.renderers.enable("html", template="inline")
    elif renderer == "png":
        alt.renderers.enable("png")
    else:
        raise ValueError(
            f"renderer must be one of {', '.join(RENDERERS)} (got {renderer!r}); "
            "'svg' renders offline everywhere"
        )
    return renderer


def ensure_offline_renderer() -> None:
    """Switch to the SVG renderer when Altair still uses its CDN-loading default (else leave it)."""
    import altair as alt

    if alt.renderers.active == "default":
        setup_notebook("svg")


def chart_svg(chart: Any) -> str:
    """An Altair chart (or a Vega-Lite dict) as an SVG string, drawn offline by vl-convert."""
    import vl_convert as vlc

    spec = chart if isinstance(chart, dict) else chart.to_dict()
    svg: str = vlc.vegalite_to_svg(spec)
    return svg
