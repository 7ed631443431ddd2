"""``taskforge-perf compare``: baseline vs candidate on the command line, for people and for CI.

Thin: the runs are loaded with ``load_run`` and compared with ``compare`` exactly as in a notebook;
the verdict printed and the exit code are ``Comparison.verdict``, nothing is recomputed here. This
module only parses the flags, maps them onto ``compare()``'s parameters and formats the result as
text (120 columns), markdown (a pull-request comment) or json.

Exit codes: 0 passed, 1 failed (a significant regression), 0 with a warning on stderr when
inconclusive (4 with ``--fail-on-inconclusive``), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from taskforge_perf.compare_stats import LEVELS

WIDTH = 120
EXIT_INCONCLUSIVE = 4
_SPEC = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*([0-9]*\.?[0-9]+)\s*(%|pp)?\s*$")
_HEAD = {"passed": "PASS", "failed": "FAIL", "inconclusive": "INCONCLUSIVE"}


def _max_regression(text: str) -> tuple[str, float]:
    """An argparse type: ``p95=10%`` (relative, the gated percentile) or ``error_rate=0.5pp``."""
    m = _SPEC.match(text)
    known = ", ".join([*LEVELS, "error_rate"])
    if not m:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not METRIC=LIMIT: write p95=10% or error_rate=0.5pp (metrics: {known})"
        )
    metric, number, unit = m.group(1), float(m.group(2)), m.group(3)
    if metric == "error_rate":
        if unit != "pp":
            raise argparse.ArgumentTypeError(
                f"{text!r}: the error rate's limit is an absolute increase in percentage points: "
                f"write error_rate={m.group(2)}pp"
            )
        return metric, number / 100
    if metric not in LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r}: the gate does not know {metric!r} (metrics: {known})")
    if unit != "%":
        raise argparse.ArgumentTypeError(
            f"{text!r}: a latency limit is a relative change: write {metric}={m.group(2)}%"
        )
    return metric, number / 100


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"must be within (0, 0.5), e.g. 0.05 (got {text!r})")
    return value


def add_compare(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``compare``."""
    p = sub.add_parser(
        "compare",
        help="compare a baseline with a candidate (runs as replicates); exit 1 on a significant regression",
        description="Compare saved runs: BASE CAND (one run each) or --base RUN... --cand RUN... "
        "(several runs per side, the runs are the replicates). RUN is a run folder or a run name under "
        "--dir. Exit codes: 0 passed, 1 failed (significant regression), 0 with a warning when "
        "inconclusive (4 with --fail-on-inconclusive), 2 usage error.",
    )
    p.add_argument("pair", nargs="*", metavar="BASE CAND", help="one baseline run and one candidate run")
    p.add_argument(
        "--base", action="extend", nargs="+", default=[], metavar="RUN", help="baseline run(s); repeatable"
    )
    p.add_argument(
        "--cand", action="extend", nargs="+", default=[], metavar="RUN", help="candidate run(s); repeatable"
    )
    p.add_argument("--dir", default="data/runs", help="where to look up runs by name (default data/runs)")
    p.add_argument(
        "--max-regression",
        type=_max_regression,
        action="append",
        default=[],
        metavar="METRIC=LIMIT",
        help="allowed change: the gated percentile in %% (default p95=10%%), the error rate in percentage "
        "points (default error_rate=1pp); repeatable",
    )
    p.add_argument(
        "--gate-metric",
        choices=list(LEVELS),
        default=None,
        help="the gated latency percentile (default p95, or the one named in --max-regression)",
    )
    p.add_argument("--alpha", type=_alpha, default=0.05, help="family-wise false-alarm rate (default 0.05)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="default text")
    p.add_argument(
        "--fail-on-inconclusive",
        action="store_true",
        help=f"exit {EXIT_INCONCLUSIVE} when the verdict is inconclusive (default: exit 0 with a warning)",
    )
    p.set_defaults(func=cmd_compare)


def _sides(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from taskforge_perf.errors import ConfigError

    if args.pair and (args.base or args.cand):
        raise ConfigError(
            "compare: give BASE CAND, or --base RUN... --cand RUN..., not both "
            "(e.g. compare --base A1 A2 --cand B1 B2)"
        )
    if args.pair:
        if len(args.pair) != 2:
            raise ConfigError(
                f"compare: BASE CAND takes exactly two runs (got {len(args.pair)}); "
                "for several runs per side use --base RUN... --cand RUN..."
            )
        return [args.pair[0]], [args.pair[1]]
    if not args.base or not args.cand:
        raise ConfigError("compare: give BASE CAND, or --base RUN... and --cand RUN... (both sides)")
    return list(args.base), list(args.cand)


def gate_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``compare()`` keyword arguments from --gate-metric, --max-regression and --alpha."""
    from taskforge_perf.errors import ConfigError

    limits: dict[str, float] = {}
    for metric, value in args.max_regression:
        if metric in limits:
            raise ConfigError(f"--max-regression {metric}=... is given twice: keep one")
        limits[metric] = value
    latency = [m for m in limits if m != "error_rate"]
    if len(latency) > 1:
        raise ConfigError(
            f"--max-regression: one latency percentile is gated, got {', '.join(latency)}: keep one"
        )
    gate = args.gate_metric or (latency[0] if latency else "p95")
    if latency and latency[0] != gate:
        raise ConfigError(
            f"--max-regression {latency[0]}=... but --gate-metric {gate}: "
            f"write --max-regression {gate}=... (or --gate-metric {latency[0]})"
        )
    kwargs: dict[str, Any] = {"gate_metric": gate, "alpha": args.alpha}
    if latency:
        kwargs["max_regression"] = limits[gate]
    if "error_rate" in limits:
        kwargs["max_error_rate_increase"] = limits["error_rate"]
    return kwargs


def cmd_compare(args: argparse.Namespace) -> int:
    """Load the runs, compare them with the library, print, and map the verdict to the exit code."""
    from taskforge_perf.compare import compare
    from taskforge_perf.errors import ConfigError
    from taskforge_perf.results import load_run
    from taskforge_perf.run_text import resolve_run

    kwargs = gate_kwargs(args)
    base_names, cand_names = _sides(args)
    base = [load_run(resolve_run(r, args.dir)) for r in base_names]
    cand = [load_run(resolve_run(r, args.dir)) for r in cand_names]
    try:
        cmp = compare(base, cand, **kwargs)
    except ValueError as exc:  # the library's own parameter checks: a usage error here
        raise ConfigError(f"compare: {exc}") from None
    names = ([r.name for r in base], [r.name for r in cand])
    render = {"text": to_text, "markdown": to_markdown, "json": to_json}[args.format]
    print(render(cmp, names))
    verdict = cmp.verdict
    if verdict.failed:
        return 1
    if verdict.inconclusive:
        if args.fail_on_inconclusive:
            return EXIT_INCONCLUSIVE
        print(
            "taskforge-perf: warning: the comparison is inconclusive (exit 0; --fail-on-inconclusive "
            f"exits {EXIT_INCONCLUSIVE}); see 'to decide' for the requests or runs needed",
            file=sys.stderr,
        )
    return 0


# -- formatting (only reads Comparison.table(), .verdict, .gate, .runs, .warnings) --------------------


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:+.{digits}%}"


def _pp(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:+.2f}"


def _ms(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.1f}"


def _rate(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2%}"


def _ci(lo: float | None, hi: float | None, fmt: Any) -> str:
    return "-" if lo is None or hi is None else f"{fmt(lo)}..{fmt(hi)}"


def _label(row: dict[str, Any], by: Sequence[str]) -> str:
    return " / ".join(str(row[k]) for k in by) or "all"


def _gate_line(cmp: Any) -> str:
    g = cmp.gate
    per, err = "/".join(cmp.by) or "run", 100 * g.max_error_rate_increase
    return (
        f"gate per {per}: {g.metric} +{g.max_regression:.0%}, error rate +{err:g} pp "
        f"(Holm, {g.alpha:.0%} family-wise false alarms; {1 - 2 * g.alpha:.0%} intervals)"
    )


def _summary(cmp: Any) -> str:
    """The verdict's head and a count, e.g. ``FAIL: a significant regression in 3 of 5 endpoints``."""
    v, t = cmp.verdict, cmp.table()
    what = "endpoints" if cmp.by == ("endpoint",) else "groups"
    rows = t["verdict"].to_list()
    if v.failed:
        n = rows.count("failed")
        return f"{_HEAD[v.status]}: a significant regression in {n} of {len(rows)} {what}"
    if v.passed:
        return f"{_HEAD[v.status]}: no regression beyond the gate in {len(rows)} {what}"
    n = sum(r != "passed" for r in rows)
    return f"{_HEAD[v.status]}: {n} of {len(rows)} {what} undecided (more requests or runs needed)"


def _runs_line(names: tuple[list[str], list[str]]) -> str:
    def side(label: str, ns: list[str]) -> str:
        return f"{label} {len(ns)} run{'s' if len(ns) != 1 else ''} ({', '.join(ns)})"

    return side("baseline", names[0]) + "; " + side("candidate", names[1])


def _rows(cmp: Any) -> list[dict[str, str]]:
    """One formatted row per group: the gated metric's and the error rate's figures."""
    g, out = cmp.gate.metric, []
    for r in cmp.table().iter_rows(named=True):
        out.append(
            {
                "group": _label(r, cmp.by),
                "n": f"{r['n_base']}/{r['n_cand']}",
                "base": _ms(r[f"{g}_base_ms"]),
                "cand": _ms(r[f"{g}_cand_ms"]),
                "change": _pct(r[f"{g}_rel"]),
                "ci": _ci(r[f"{g}_rel_ci_low"], r[f"{g}_rel_ci_high"], _pct),
                "decision": r[f"{g}_decision"] or "-",
                "err_base": _rate(r["error_rate_base"]),
                "err_cand": _rate(r["error_rate_cand"]),
                "err_change": _pp(r["error_rate_delta"]),
                "err_ci": _ci(r["error_rate_ci_low"], r["error_rate_ci_high"], _pp),
                "err_decision": r["error_rate_decision"] or "-",
                "verdict": r["verdict"],
            }
        )
    return out


def _grid(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def to_text(cmp: Any, names: tuple[list[str], list[str]]) -> str:
    """The comparison for a terminal or a CI log (lines of at most 120 characters)."""
    g, ci = cmp.gate.metric, f"{1 - 2 * cmp.gate.alpha:.0%} CI"
    rows = _rows(cmp)
    wrap = textwrap.TextWrapper(width=WIDTH, initial_indent="  - ", subsequent_indent="    ")
    out = [_summary(cmp)]
    out += [line for reason in cmp.verdict.reasons for line in wrap.wrap(reason)]
    out += textwrap.wrap(_runs_line(names), WIDTH) + textwrap.wrap(_gate_line(cmp), WIDTH) + [""]
    out += _grid(
        [
            cmp.by[0] if len(cmp.by) == 1 else "group",
            "requests",
            f"{g} base ms",
            "cand ms",
            "change",
            ci,
            "decision",
            "verdict",
        ],
        [
            [r["group"], r["n"], r["base"], r["cand"], r["change"], r["ci"], r["decision"], r["verdict"]]
            for r in rows
        ],
        right={1, 2, 3, 4, 5},
    )
    out.append("")
    out += _grid(
        [
            cmp.by[0] if len(cmp.by) == 1 else "group",
            "error rate base",
            "cand",
            "change pp",
            f"{ci} pp",
            "decision",
        ],
        [
            [r["group"], r["err_base"], r["err_cand"], r["err_change"], r["err_ci"], r["err_decision"]]
            for r in rows
        ],
        right={1, 2, 3, 4},
    )
    if cmp.warnings:
        out += ["", "warnings:"]
        out += [line for w in cmp.warnings for line in wrap.wrap(w)]
    return "\n".join(out)


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")


def to_markdown(cmp: Any, names: tuple[list[str], list[str]]) -> str:
    """A markdown comment for a pull request: the verdict line, one table row per group, reasons."""
    g, ci = cmp.gate.metric, f"{1 - 2 * cmp.gate.alpha:.0%} CI"
    head = cmp.by[0] if len(cmp.by) == 1 else "group"
    out = [f"**{_summary(cmp)}**", "", _runs_line(names) + ".", "", _gate_line(cmp) + ".", ""]
    out.append(
        f"| {head} | {g} base (ms) | {g} cand (ms) | {g} change ({ci}) | {g} decision | errors base | "
        f"errors cand | errors change, pp ({ci}) | errors decision | verdict |"
    )
    out.append("|---|--:|--:|--:|---|--:|--:|--:|---|---|")
    for r in _rows(cmp):
        verdict = f"**{r['verdict']}**" if r["verdict"] == "failed" else r["verdict"]
        cells = [
            r["group"],
            r["base"],
            r["cand"],
            f"{r['change']} ({r['ci']})",
            r["decision"],
            r["err_base"],
            r["err_cand"],
            f"{r['err_change']} ({r['err_ci']})",
            r["err_decision"],
            verdict,
        ]
        out.append("| " + " | ".join(_md(c) for c in cells) + " |")
    out += ["", "Why:", *(f"- {_md(x)}" for x in cmp.verdict.reasons)]
    if cmp.warnings:
        out += ["", "Warnings:", *(f"- {_md(x)}" for x in cmp.warnings)]
    return "\n".join(out)


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def to_json(cmp: Any, names: tuple[list[str], list[str]]) -> str:
    """The verdict (status, reasons, per-test rows), the gate, the runs and the per-group table."""
    v = cmp.verdict
    doc = {
        "verdict": {
            "status": v.status,
            "passed": v.passed,
            "failed": v.failed,
            "inconclusive": v.inconclusive,
            "reasons": list(v.reasons),
            "tests": [{k: _finite(x) for k, x in t.items()} for t in v.tests.to_dicts()],
        },
        "gate": {
            "metric": v.gate.metric,
            "max_regression": v.gate.max_regression,
            "max_error_rate_increase": v.gate.max_error_rate_increase,
            "alpha": v.gate.alpha,
        },
        "by": list(cmp.by),
        "runs": {"baseline": names[0], "candidate": names[1]},
        "warnings": list(cmp.warnings),
        "rows": [{k: _finite(x) for k, x in r.items()} for r in cmp.table().to_dicts()],
    }
    return json.dumps(doc, indent=2, allow_nan=False)
