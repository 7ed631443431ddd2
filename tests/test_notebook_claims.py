"""What the notebooks' markdown says about their outputs holds (the claims that can be checked
without running a load: plan rates, preset figures, chart types and colours)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.chart_style import PALETTE

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
pytestmark = pytest.mark.timeout(60)


def cells(stem: str) -> list[dict[str, Any]]:
    nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())
    return [{"type": c["cell_type"], "source": "".join(c["source"])} for c in nb["cells"]]


def markdown_before(stem: str, code_snippet: str) -> str:
    """The markdown cell right before the first code cell containing ``code_snippet``."""
    cs = cells(stem)
    i = next(i for i, c in enumerate(cs) if c["type"] == "code" and code_snippet in c["source"])
    return next(c["source"] for c in reversed(cs[:i]) if c["type"] == "markdown")


def plan_of_nb02(phase_s: float = 1.0) -> tfp.StressPlan:
    src = next(c["source"] for c in cells("02_stress_plan") if "plan = tfp.StressPlan([" in c["source"])
    scope: dict[str, Any] = {"tfp": tfp, "PHASE_S": phase_s}
    exec(src.replace("plan.chart()", ""), scope)  # the notebook's own plan cell
    return scope["plan"]


def test_nb02_phase_rates_are_the_ones_the_text_gives() -> None:
    plan = plan_of_nb02()
    text = markdown_before("02_stress_plan", "plan = tfp.StressPlan([")
    rates = [p.rate for p in plan.phases if p.rate is not None]
    said = [float(x) for x in re.findall(r"\b(\d+)\b", text.split("cool-down")[0])]
    assert said == rates  # "50, then a ramp to 200, 200, and a spike at 400 req/s"
    cool = plan.phases[-1]
    assert cool.name == "cool-down" and cool.rate is None and cool.think_time > 0
    most = cool.concurrency / cool.think_time  # each user waits think_time between requests
    assert f"{cool.concurrency} users" in text.replace("\n", " ") and f"{cool.think_time:g} s" in text
    assert f"about {most:.0f} req/s" in text.replace("\n", " ")
    assert most < max(rates)  # "well below the spike" (it once ran 2.5x the spike)


def test_nb02_preset_figures_match_the_presets_and_the_readme() -> None:
    text = markdown_before("02_stress_plan", "presets = pl.DataFrame(")
    peaks = [
        next(p.concurrency for p in tfp.StressPlan.preset(n).phases if p.name == "peak")
        for n in ("dev", "staging", "production")
    ]
    assert "/".join(map(str, peaks)) + " concurrent users" in text.replace("\n", " ")
    readme = (NOTEBOOKS.parent / "README.md").read_text()
    assert "/".join(map(str, peaks)) + " users" in readme


def test_nb03_chart_descriptions_match_the_charts() -> None:
    text = markdown_before("03_compare_builds", "cmp.chart()").replace("\n", " ")
    assert "one curve for the baseline (grey) and one for the candidate (blue)" in text
    cmp = tfp.compare(SAMPLES / "baseline", SAMPLES / "candidate")
    spec = json.dumps(cmp.chart().to_dict())
    assert f'"range": ["{PALETTE["baseline"]}", "{PALETTE["candidate"]}"]' in spec
    assert '"domain": ["baseline", "candidate"]' in spec
    delta_text = markdown_before("03_compare_builds", "cmp.delta_chart()")
    assert "clipped" in delta_text and "p50, p95 and p99" in delta_text
    assert set(cmp.metrics) >= {"p50", "p95", "p99"}


def test_nb03_verdict_text_matches_what_the_verdict_shows() -> None:
    text = markdown_before("03_compare_builds", "display(cmp.verdict)").replace("\n", " ")
    assert (
        "every endpoint that failed or is undecided with its change, interval and what would decide" in text
    )
    base = sorted(p for p in SAMPLES.iterdir() if p.name.startswith("baseline"))
    cand = sorted(p for p in SAMPLES.iterdir() if p.name.startswith("candidate"))
    v = tfp.compare(base, cand).verdict
    md = v._repr_markdown_()  # what display(cmp.verdict) shows
    shown = v.tests.filter(pl.col("decision") != "within")
    assert shown.height and md.startswith(f"**{v.status.upper()}")
    for r in shown.iter_rows(named=True):
        row = next(line for line in md.splitlines() if line.startswith(f"| {r['group']} | {r['test']} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == f"**{r['decision']}**" and cells[3] != "–"  # the change
        assert cells[4] == "no interval" if r["ci_low"] is None else cells[4].startswith("90% CI")
        if r["decision"] != "regressed":
            assert cells[6] != "–"  # what would decide it
    assert "\n" not in str(v)  # the one-line form stays one line


def test_nb04_connections_text_matches_the_chart() -> None:
    text = markdown_before("04_websocket_status", "run.charts.ws_connections()").replace("\n", " ")
    assert "open connections (blue)" in text and "dropped (orange)" in text and "failed (red)" in text
    assert "dips" not in text  # the open line does not dip at 1 s windows: not claimed any more
    from taskforge_perf.synthetic import synthetic_events, synthetic_ws_events

    run = tfp.Run(synthetic_events(100), synthetic_ws_events(500), {})
    spec = json.dumps(run.charts.ws_connections().to_dict())
    assert f'"range": ["{PALETTE["ok"]}", "{PALETTE["degraded"]}", "{PALETTE["failed"]}"]' in spec


def test_latency_over_time_has_the_two_panels_the_texts_describe() -> None:
    for stem, snippet in (
        ("01_quickstart", "run.charts.latency_over_time()"),
        ("02_stress_plan", "stepped.charts.latency_over_time"),
    ):
        text = markdown_before(stem, snippet)
        assert "top panel" in text and "bottom panel" in text
    from taskforge_perf.synthetic import synthetic_events

    spec = tfp.Run(synthetic_events(2_000), None, {}).charts.latency_over_time().to_dict()
    assert [p["layer"][-1]["encoding"]["y"]["title"] for p in spec["vconcat"]] == [
        "Latency p95 (ms)",
        "Response time p95 (ms)",
    ]
