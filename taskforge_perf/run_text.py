"""Plain-text views of saved runs for terminals and CI logs (``taskforge-perf runs`` / ``show``).

Built only on the public API (``runs()``, ``load_run``, ``Run.overall/summary/thresholds/
assessment``), and fitted to a width (120 columns by default) by shortening the widest cells.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from taskforge_perf.errors import ConfigError
from taskforge_perf.results import DEFAULT_STORE, Run, default_store, load_run, runs

WIDTH = 120
_GRADES = {"grade_error_rate": "grade_err", "grade_latency": "grade_lat", "grade_throughput": "grade_tput"}


def runs_frame(root: str | Path = DEFAULT_STORE) -> pl.DataFrame:
    """Saved runs under ``root`` with their headline figures: run, name, started, duration_s,
    requests, error_rate, p95_ms, passed (one row per run, oldest first)."""
    rows = []
    for r in runs(root).iter_rows(named=True):
        run = load_run(r["path"])
        overall = run.overall()
        first = overall.row(0, named=True) if overall.height else {}
        rows.append(
            {
                "run": Path(r["path"]).name,
                "name": r["name"],
                "started": r["started"],
                "duration_s": r["duration_s"],
                "requests": first.get("count"),
                "error_rate": first.get("error_rate"),
                "p95_ms": first.get("p95_ms"),
                "passed": run.passed,
            }
        )
    schema: dict[str, pl.DataType] = {
        "run": pl.String(),
        "name": pl.String(),
        "started": pl.Datetime("ns"),
        "duration_s": pl.Float64(),
        "requests": pl.Int64(),
        "error_rate": pl.Float64(),
        "p95_ms": pl.Float64(),
        "passed": pl.Boolean(),
    }
    return pl.DataFrame(rows, schema=schema)


def _cell(value: Any, column: str, precision: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if column == "error_rate" and isinstance(value, float):
        return f"{value * 100:.2f}%"
    if isinstance(value, float):
        return f"{value:.{precision}f}"
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M:%S"))
    return str(value)


def table(frame: pl.DataFrame, *, width: int = WIDTH, precision: int = 1) -> str:
    """A frame as an aligned plain-text table no wider than ``width`` (long cells end in '~')."""
    if frame.width == 0:
        return "(none)"
    cols = frame.columns
    cells = [[_cell(v, c, precision) for v, c in zip(row, cols, strict=True)] for row in frame.iter_rows()]
    numeric = [frame.schema[c].is_numeric() for c in cols]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    sep = 2
    while sum(widths) + sep * (len(cols) - 1) > width and max(widths) > 6:
        widths[widths.index(max(widths))] -= 1

    def fit(text: str, w: int, right: bool) -> str:
        text = text if len(text) <= w else text[: w - 1] + "~"
        return text.rjust(w) if right else text.ljust(w)

    lines = [(" " * sep).join(fit(c, w, n) for c, w, n in zip(cols, widths, numeric, strict=True)).rstrip()]
    for r in cells:
        lines.append(
            (" " * sep).join(fit(v, w, n) for v, w, n in zip(r, widths, numeric, strict=True)).rstrip()
        )
    return "\n".join(lines)


def fit_table(frame: pl.DataFrame, *, width: int = WIDTH, precision: int = 1) -> str:
    """``table``, except that a one-row frame too wide for ``width`` is printed vertically
    (``column  value`` lines): the WebSocket summary's 16 columns no longer wrap."""
    if frame.height == 1:
        natural = sum(
            max(len(c), len(_cell(v, c, precision))) + 2 for c, v in frame.row(0, named=True).items()
        )
        if natural > width:
            pad = max(len(c) for c in frame.columns)
            return "\n".join(
                f"{c.ljust(pad)}  {_cell(v, c, precision)}" for c, v in frame.row(0, named=True).items()
            )
    dropped: list[str] = []
    text = table(frame, width=1_000_000, precision=precision)
    while frame.width > 2 and max(len(line) for line in text.splitlines()) > width:
        dropped.insert(0, frame.columns[-1])  # the rightmost columns go, the names stay whole
        frame = frame.drop(frame.columns[-1])
        text = table(frame, width=1_000_000, precision=precision)
    text = table(frame, width=width, precision=precision)
    return text + (f"\n(+{len(dropped)} columns not shown: {', '.join(dropped)})" if dropped else "")


def runs_text(root: str | Path = DEFAULT_STORE, *, width: int = WIDTH) -> str:
    """``taskforge-perf runs [DIR]``: one line per saved run."""
    frame = runs_frame(root)
    if not frame.height:
        return f"no saved runs under {root}/ (save one with run.save() or taskforge-perf run)"
    return table(frame, width=width)


def resolve_run(name: str, root: str | Path = DEFAULT_STORE) -> Path:
    """A run folder from a path, or a run's folder name under ``root``."""
    for candidate in (Path(name), default_store(root) / name):
        if (candidate / "meta.json").is_file():
            return candidate
    raise ConfigError(
        f"no saved run {name!r}: give a run folder (with meta.json) or a run name listed by "
        f"'taskforge-perf runs {root}'"
    )


def _pick(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    return frame.select([c for c in columns if c in frame.columns])


def show_text(run: Run, *, width: int = WIDTH) -> str:
    """``taskforge-perf show RUN``: the run's header, summary, thresholds and assessment."""
    m = run.meta
    target = (m.get("target") or {}).get("base_url", "-")
    wall = m.get("wall_start_ns")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall / 1e9)) if wall else "-"
    out = [
        f"run {run.run_id}  (name {run.name!r})",
        f"target {target}  started {started}  load {run.duration_s:.1f} s  stopped: {m.get('stopped')}",
        f"plan: {', '.join(p.name for p in run.plan.phases)}  passed: {'yes' if run.passed else 'NO'}",
        "",
        "Summary (per endpoint, ms):",
        table(
            _pick(
                run.summary(),
                ("endpoint", "count", "rps", "errors", "error_rate", "p50_ms", "p95_ms", "p99_ms", "max_ms"),
            ),
            width=width,
        ),
    ]
    checks = run.thresholds()
    out += ["", "Thresholds:"]
    if checks.height:
        out.append(table(_pick(checks, ("threshold", "scope", "actual", "passed")), width=width, precision=3))
    else:
        out.append("(none given)")
    assessment = run.assessment()
    out += [
        "",
        "Assessment (per phase):",
        table(
            _pick(
                assessment,
                (
                    "phase",
                    "asked_rps",
                    "achieved_rps",
                    "requests",
                    "error_rate",
                    "p95_ms",
                    "p99_ms",
                    "grade_error_rate",
                    "grade_latency",
                    "grade_throughput",
                ),
            ).rename(_GRADES, strict=False),
            width=width,
        ),
    ]
    bp = run.breaking_point()
    out.append(f"breaking point: {bp if bp is not None else 'none'}")
    out += finding_lines(run, assessment, width=width)
    return "\n".join(out)


def finding_lines(run: Run, assessment: pl.DataFrame | None = None, *, width: int = WIDTH) -> list[str]:
    """``finding: capacity reached at phase ...`` / ``finding: the tester could not keep up ...``
    lines (``assessment.findings``), printed beside the pass/fail line; none when every phase held
    or the run has no plan."""
    from taskforge_perf.assessment import findings

    if assessment is None:
        if not run.meta.get("plan"):
            return []
        assessment = run.assessment()
    return [
        textwrap.fill(f"finding: {f}", width, subsequent_indent="  ", break_on_hyphens=False)
        for f in findings(assessment)
    ]
