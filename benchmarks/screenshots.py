"""Screenshots of every notebook (executed, exported to HTML) and of a report, in headless Chromium.

What an analyst would see, for a person to look at: nothing here asserts anything. Pages are
written outside git (default /tmp/tfp-screens/). A long page is cut into screens of ``--height``
pixels by framing it at successive offsets (no image library needed).

    python benchmarks/screenshots.py                 # every notebook (short parameters) + a report
    python benchmarks/screenshots.py --only 02 --full  # one notebook, its own (long) parameters

The report is of a fresh run against the reference target (thresholds, WebSockets, a plan),
compared with a second run: every section of the report shows.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--hide-scrollbars",
    "--allow-file-access-from-files",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def page_height(page: Path) -> int:
    """The rendered page's height in px (from Chromium's DOM dump with a height probe)."""
    probe = page.with_suffix(".probe.html")
    probe.write_text(
        f"<html><body style='margin:0'><iframe id=f src='{page.as_uri()}' width=1280 height=100 "
        'onload="document.title=this.contentDocument.documentElement.scrollHeight"></iframe></body></html>'
    )
    with tempfile.TemporaryDirectory() as prof:
        out = subprocess.run(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={prof}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        ).stdout
    probe.unlink()
    start = out.find("<title>")
    try:
        return int(out[start + 7 : out.find("</title>", start)])
    except ValueError:
        return 6000


def shoot(page: Path, out_dir: Path, *, height: int = 1800, max_screens: int = 12) -> list[Path]:
    """PNG screens of ``page``, top to bottom."""
    total = page_height(page)
    shots = []
    for i in range(min(max_screens, max(1, -(-total // height)))):
        frame = out_dir / f"{page.stem}.frame{i}.html"
        frame.write_text(
            "<html><body style='margin:0;overflow:hidden'>"
            f"<iframe src='{page.as_uri()}' style='position:absolute;top:-{i * height}px;left:0;border:0' "
            f"width=1280 height={total + height} scrolling=no></iframe></body></html>"
        )
        png = out_dir / f"{page.stem}-{i + 1:02d}.png"
        with tempfile.TemporaryDirectory() as prof:
            subprocess.run(
                [
                    CHROMIUM,
                    *FLAGS,
                    f"--user-data-dir={prof}",
                    f"--window-size=1280,{height}",
                    "--virtual-time-budget=5000",
                    f"--screenshot={png}",
                    frame.as_uri(),
                ],
                capture_output=True,
                timeout=90,
                check=False,
            )
        frame.unlink()
        shots.append(png)
    return shots


def notebooks(out_dir: Path, only: str | None, full: bool) -> list[Path]:
    from test_notebooks import SHORT  # the parameters the test suite uses

    from taskforge_perf.report import execute_notebook, export_html

    pages = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if only and not path.stem.startswith(only):
            continue
        t0 = time.perf_counter()
        nb = execute_notebook(path, {} if full else SHORT[path.stem], timeout=600)
        page = out_dir / f"{path.stem}.html"
        page.write_text(export_html(nb, title=path.stem, hide_code=False), encoding="utf-8")
        print(f"{path.stem}: executed in {time.perf_counter() - t0:.0f} s", flush=True)
        pages.append(page)
    return pages


def report_page(out_dir: Path) -> Path:
    """A report of a short run with thresholds, WebSockets and a plan, compared with another."""
    import taskforge_perf as tfp

    plan = tfp.StressPlan.steps(40, 120, 40, 3)
    runs = []
    with tfp.ReferenceTarget(seed=7) as target:
        for name in ("baseline", "candidate"):
            tester = tfp.LoadTester(
                target,
                tfp.UserPool(count=20, email_prefix=f"shot-{name}"),
                live=False,
                websockets=5,
                save_dir=out_dir / "runs",
            )
            runs.append(
                tester.run_sync(
                    plan=plan,
                    wait_for_tasks=3.0,
                    name=f"screens-{name}",
                    thresholds=["p95 < 50ms", "error_rate < 1%", "p99(POST /tasks generate-pdf) < 100ms"],
                )
            )
    out = tfp.report(runs[1], compare=runs[0], output=out_dir / "report.html", progress=False)
    return Path(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/tfp-screens"))
    ap.add_argument("--only", help="a notebook name prefix (e.g. 02), or 'report'")
    ap.add_argument("--full", action="store_true", help="the notebooks' own parameters, not the short ones")
    ap.add_argument("--height", type=int, default=1800)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pages = [] if args.only == "report" else notebooks(args.out, args.only, args.full)
    if args.only in (None, "report"):
        pages.append(report_page(args.out))
    for page in pages:
        for png in shoot(page, args.out, height=args.height):
            print(png)


if __name__ == "__main__":
    main()
