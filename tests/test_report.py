"""Reports: the CLI and ``tfp.report`` write self-contained HTML; it renders offline in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.synthetic import synthetic_events, synthetic_ws_events

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Headless, sandbox-less (root in CI), no background traffic, and no network at all: every host
#: name fails to resolve and any proxied connection goes to a closed port.
OFFLINE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--virtual-time-budget=10000",
    "--dump-dom",
]


@pytest.fixture(scope="module")
def compare_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The candidate sample compared with the baseline sample, through the command line."""
    out = tmp_path_factory.mktemp("report") / "candidate.html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskforge_perf",
            "report",
            str(SAMPLES / "candidate"),
            "--compare",
            str(SAMPLES / "baseline"),
            "-o",
            str(out),
            "--title",
            "Candidate build",
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cell 1/" in proc.stderr and "wrote" in proc.stderr  # progress on stderr
    assert re.search(r"^(PASS|FAIL|INCONCLUSIVE): ", proc.stdout, re.M)  # the one verdict
    return out.read_text(encoding="utf-8")


@pytest.mark.timeout(120)
def test_report_is_self_contained(compare_report: str) -> None:
    html = compare_report
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", html), "a script from a CDN"
    assert not re.search(r"<link[^>]+href=[\"']?(https?:)?//", html), "a stylesheet from a CDN"
    assert not re.search(r"\bimport\(['\"]https?:", html), "a module loaded from a CDN"
    assert "<title>Candidate build</title>" in html
    # Six charts inline as SVG: latency, throughput, spectrum, users, compare, delta.
    assert html.count("<svg") >= 6
    assert "p95 (ms)" in html and "POST /tasks generate-pdf" in html  # the summary table
    assert re.search(r"Verdict: (PASSED|FAILED|INCONCLUSIVE)", html)  # the one verdict
    assert "def " not in html and "import taskforge_perf" not in html  # code cells hidden


@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium missing: run `make chromium`")
def test_report_renders_offline_in_chromium(compare_report: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(compare_report, encoding="utf-8")
    proc = subprocess.run(
        [CHROMIUM, *OFFLINE_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert dom.count("<svg") >= 6, "charts missing from the rendered page"
    assert re.search(r"<g[^>]*class=\"mark-", dom), "Vega marks missing from the charts"
    tables = re.findall(r"<table.*?</table>", dom, flags=re.S)
    assert any("p95 (ms)" in t and "GET /health" in t for t in tables), "summary table missing"


@pytest.mark.timeout(120)
def test_report_of_an_unsaved_run_with_websockets(tmp_path: Path) -> None:
    """A ``Run`` object (not saved) is saved to a temporary folder first; WS sections appear."""
    events = synthetic_events(3_000, seed=3)
    span = events.select(pl.col("t_end").max()).item() / 1e9
    meta = {
        "name": "synthetic",
        "run_id": "synthetic-1",
        "duration_s": span,
        "stopped": "completed",
        "wall_start_ns": 1_700_000_000_000_000_000,
        "counters": {"requests": 3_000, "errors": {}, "tasks_created": 10},
    }
    run = tfp.Run(events, synthetic_ws_events(200, connections=10, duration_s=span), meta)
    messages: list[str] = []
    out = tfp.report(run, output=tmp_path / "r.html", progress=messages.append)
    html = out.read_text(encoding="utf-8")
    assert "WebSocket status gateway" in html and "unfinished at end" in html
    assert html.count("<svg") >= 6  # 4 HTTP charts + task latency + connections
    assert "no per-phase assessment" in html  # no plan in this run's meta: said, not crashed
    assert messages[0].startswith("executing") and messages[-1].startswith("wrote")


def test_report_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(tfp.ConfigError, match="not a saved run"):
        tfp.report(tmp_path, output=tmp_path / "r.html", progress=False)
    with pytest.raises(tfp.ConfigError, match=r"\.html"):
        tfp.report(SAMPLES / "baseline", output=tmp_path / "r.pdf", progress=False)


@pytest.mark.timeout(180)
def test_report_in_a_notebook_shows_one_progress_bar_and_a_link(tmp_path: Path) -> None:
    """In a kernel: one progress display updated in place (no stderr lines), and the returned
    path displays as a link plus the verdict box."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import taskforge_perf as tfp\n"
            f"tfp.report({str(SAMPLES / 'candidate')!r}, compare={str(SAMPLES / 'baseline')!r}, "
            f"output={str(tmp_path / 'nb.html')!r})"
        )
    ]
    from taskforge_perf.report import execute_notebook

    out = execute_notebook(nb, cwd=tmp_path, timeout=170).cells[0].outputs
    assert not [o for o in out if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    bars = [o for o in out if "<progress" in str(o.get("data", {}).get("text/html", ""))]
    assert len(bars) == 1  # one display, updated in place (update_display_data is not kept)
    result = [o for o in out if o.get("output_type") == "execute_result"][0]["data"]["text/html"]
    assert "Open the report" in result and "nb.html" in result and "tfp-verdict" in result
    assert "FAILED" in result  # the candidate sample regressed against the baseline
