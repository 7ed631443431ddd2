"""First steps an analyst takes: summary by one key, the run store, compare/report on folders or
runs, the report's return value, terminal tables within 120 columns, formatted tables, the verdict."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf import report_parts as rp
from taskforge_perf.results import default_store, project_root
from taskforge_perf.run_text import WIDTH, fit_table
from taskforge_perf.synthetic import synthetic_events, synthetic_ws_events
from taskforge_perf.tables import column_label, display_table

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
pytestmark = pytest.mark.timeout(120)


def _run(**meta: object) -> tfp.Run:
    ev = synthetic_events(2_000, seed=1, users=7)
    return tfp.Run(ev, None, {"name": "s", "stopped": "completed", "duration_s": 10.0, **meta})


def test_summary_by_a_string_is_one_key() -> None:
    s = _run().summary(by="user")
    assert s.columns[0] == "user" and s.height == 7
    assert _run().summary(by=("user", "endpoint")).columns[:2] == ["user", "endpoint"]


def test_the_store_is_found_from_the_project_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.delenv("TASKFORGE_PERF_RUNS", raising=False)
    assert project_root() == tmp_path.resolve()
    assert default_store() == tmp_path.resolve() / "data" / "runs"  # not notebooks/data/runs
    monkeypatch.setenv("TASKFORGE_PERF_RUNS", str(tmp_path / "elsewhere"))
    assert default_store() == tmp_path / "elsewhere"
    assert default_store("mine") == Path("mine")


def test_compare_takes_a_run_or_a_folder_alike() -> None:
    by_folder = tfp.compare(SAMPLES / "baseline", str(SAMPLES / "candidate"))
    by_run = tfp.compare(tfp.load_run(SAMPLES / "baseline"), tfp.load_run(SAMPLES / "candidate"))
    assert by_folder.verdict.status == by_run.verdict.status
    assert by_folder.table().equals(by_run.table())
    run = tfp.load_run(SAMPLES / "baseline")
    assert tfp.load_run(run) is run


def test_report_of_a_saved_run_reads_its_folder_and_shows_a_link(tmp_path: Path) -> None:
    folder = tmp_path / "cand"
    shutil.copytree(SAMPLES / "candidate", folder)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    run = tfp.load_run(folder)
    messages: list[str] = []
    out = tfp.report(run, output=tmp_path / "r.html", progress=messages.append)
    assert str(folder.resolve()) in messages[0]  # the run's own folder, not a re-saved copy
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # nothing rewritten
    assert isinstance(out, Path) and out == tmp_path / "r.html"
    html = out._repr_html_()
    assert "<a href=" in html and "tfp-verdict" in html and "INCONCLUSIVE" in html
    page = out.read_text()
    assert page.index("tfp-verdict") < page.index("What was run") < page.index("Per endpoint")
    assert "Contents:" in page and "Request mix (weights)" in page and "Traffic (bytes in/out)" in page


def test_terminal_tables_fit_120_columns() -> None:
    ws = tfp.Run(synthetic_events(500, seed=2), synthetic_ws_events(300, connections=5, duration_s=5), {})
    text = fit_table(ws.ws_summary())
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    assert len(text.splitlines()) == ws.ws_summary().width  # one line per measure: vertical
    summary = fit_table(_run().summary())
    assert all(len(line) <= WIDTH for line in summary.splitlines()[:-1])
    assert "columns not shown" in summary.splitlines()[-1]
    assert "GET /health" in summary  # endpoint names never cut


def test_display_table_units_percent_separators_no_truncation() -> None:
    name = "POST /tasks generate-pdf with a long suffix that Polars would cut"
    df = pl.DataFrame({"endpoint": [name], "count": [12_345], "error_rate": [0.0412], "p95_ms": [None]})
    html = display_table(df).as_raw_html()
    assert name in html and "12,345" in html and "4.1%" in html and "–" in html
    assert "p95 (ms)" in html and '"' + name not in html
    assert column_label("resp_p99_9_ms") == "resp p99.9 (ms)" and column_label("rps") == "req/s"


def test_verdict_box() -> None:
    failing = [
        {"threshold": "p95 < 1ms", "actual": 12.5, "unit": "ms", "passed": False},
        {"threshold": "error_rate < 1%", "actual": 0.002, "unit": "ratio", "passed": True},
    ]
    v = rp.verdict(_run(thresholds=failing))
    assert v.status == "failed" and ("p95 < 1ms", "→ 12.5 ms", "failed") in v.badges
    assert ("error_rate < 1%", "→ 0.20%", "ok") in v.badges
    assert rp.verdict(_run(thresholds=failing[1:])).status == "passed" or rp.verdict(
        _run(thresholds=failing[1:])
    ).reasons[-1].startswith("WARNING")
    assert rp.verdict(_run()).status == "inconclusive"  # nothing checked: not a pass
    aborted = rp.verdict(_run(thresholds=failing[1:], stopped="aborted"))
    assert aborted.status == "failed"
    html = rp.verdict_html(_run(thresholds=failing))
    assert "FAILED" in html and "p95 &lt; 1ms" in html


def test_compare_warnings_name_plans_not_raw_dicts() -> None:
    base, cand = tfp.load_run(SAMPLES / "baseline"), tfp.load_run(SAMPLES / "candidate")
    cand.meta = {**cand.meta, "plan": {**cand.meta["plan"], "phases": cand.meta["plan"]["phases"][:2]}}
    warnings = tfp.compare(base, cand).warnings
    plan_warning = next(w for w in warnings if w.startswith("different plans"))
    assert "{" not in plan_warning and "warmup 2 s @ 50/s → peak 8 s @ 150/s" in plan_warning


def test_display_table_lists_and_booleans_as_text() -> None:
    df = pl.DataFrame({"task": ["pdf"], "statuses": [["processing", "completed"]], "ok": [True]})
    html = display_table(df).as_raw_html()
    assert "processing, completed" in html and ">yes<" in html and "[" not in html.split("<tbody")[1]
