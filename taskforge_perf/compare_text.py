"""A comparison's verdict for people: several lines (``Verdict.explain()``) or Markdown (how a
notebook displays a ``Verdict``), and the warnings' wording. ``str(verdict)`` stays one line for
CI logs and gates. Pure text from the verdict's ``tests`` frame and gate; nothing is recomputed.

The layout: the decision and how many gated tests decided it; the gate; then every regressed test
and every undecided one (estimate, interval, Holm-adjusted p, and for the undecided what would
decide it); the tests within the gate are counted and named in one line.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskforge_perf.compare import Verdict

__all__ = ["brief", "explain", "markdown", "meta_warnings"]

_HEAD = {"passed": "PASSED", "failed": "FAILED", "inconclusive": "INCONCLUSIVE"}
_UNDECIDED = ("inconclusive", "insufficient data", "missing")


def _change(test: Mapping[str, Any], gate_metric: str) -> str:
    """``+31.2%`` for a latency ratio, ``+0.12 pp`` for an error-rate difference, '–' when unknown."""
    est = test.get("estimate")
    if est is None:
        return "–"
    return f"{est:+.1%}" if test["test"] == gate_metric else f"{est * 100:+.2f} pp"


def _interval(test: Mapping[str, Any], gate_metric: str, level: float) -> str:
    lo, hi = test.get("ci_low"), test.get("ci_high")
    if lo is None or hi is None:
        return "no interval"
    if test["test"] == gate_metric:
        return f"{level:.0%} CI {lo:+.1%} .. {hi:+.1%}"
    return f"{level:.0%} CI {lo * 100:+.2f} .. {hi * 100:+.2f} pp"


def _to_decide(test: Mapping[str, Any]) -> str | None:
    """What would decide this test: its own part of the group's ``needed`` ("p95: about 3,400
    requests per side; error rate: ..."), without the test's name; the whole text if none is its."""
    needed = test.get("needed")
    if not needed:
        return None
    prefix = f"{test['test']}: "
    own = [part.removeprefix(prefix) for part in str(needed).split("; ") if part.startswith(prefix)]
    return "; ".join(own) if own else str(needed)


def _parts(v: Verdict) -> tuple[str, str, list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    g = v.gate
    rows = v.tests.to_dicts()
    regressed = [r for r in rows if r["decision"] == "regressed"]
    undecided = [r for r in rows if r["decision"] in _UNDECIDED]
    within = [r for r in rows if r["decision"] == "within"]
    n = len(rows)
    if v.status == "failed":
        summary = f"{len(regressed)} of {n} gated tests regressed"
    elif v.status == "passed":
        summary = f"all {n} gated tests within the gate"
    else:
        summary = f"{len(undecided)} of {n} gated tests undecided" if n else "nothing to compare"
    gate = (
        f"gate: {g.metric} at most +{g.max_regression:.0%} (a FAIL needs more than +{g.tolerance:.0%}), "
        f"error rate at most +{g.max_error_rate_increase * 100:.2f} pp; {g.alpha:.0%} family-wise "
        f"false-alarm rate (Holm); {1 - 2 * g.alpha:.0%} intervals"
    )
    return f"{_HEAD[v.status]}: {summary}", gate, regressed, undecided, within


def explain(v: Verdict, *, width: int = 100) -> str:
    """The verdict in several plain-text lines (see the module docstring)."""
    head, gate, regressed, undecided, within = _parts(v)
    level, m = 1 - 2 * v.gate.alpha, v.gate.metric
    out = [head, *textwrap.wrap(gate, width, subsequent_indent="  ")]
    if regressed:
        out += ["", "regressed:"]
        for r in regressed:
            p = f", Holm p={r['p_holm']:.2g}" if r.get("p_holm") is not None else ""
            out.append(f"  {r['group']}  {r['test']}  {_change(r, m)}  ({_interval(r, m, level)}{p})")
    if undecided:
        out += ["", "undecided:"]
        for r in undecided:
            out.append(
                f"  {r['group']}  {r['test']}  {r['decision']}: {_change(r, m)}  ({_interval(r, m, level)})"
            )
            if _to_decide(r):
                out += textwrap.wrap(
                    f"to decide: {_to_decide(r)}", width, initial_indent="    ", subsequent_indent="      "
                )
        if not v.tests.height:
            out.append("  no groups to compare")
    if within:
        names = ", ".join(f"{r['group']} {r['test']}" for r in within)
        out += [
            "",
            *textwrap.wrap(f"within the gate ({len(within)}): {names}", width, subsequent_indent="  "),
        ]
    return "\n".join(out)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def markdown(v: Verdict) -> str:
    """The verdict as Markdown: the decision in bold, the gate, a table of the regressed and
    undecided tests (with what would decide them), the tests within the gate in one line."""
    head, gate, regressed, undecided, within = _parts(v)
    level, m = 1 - 2 * v.gate.alpha, v.gate.metric
    out = [f"**{_md(head)}**  ", _md(gate[0].upper() + gate[1:])]
    shown = regressed + undecided
    if shown:
        out += [
            "",
            "| group | test | decision | change | interval | Holm p | to decide |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in shown:
            p = f"{r['p_holm']:.2g}" if r.get("p_holm") is not None else "–"
            decide = _md(_to_decide(r) or "–") if r["decision"] in _UNDECIDED else "–"
            out.append(
                f"| {_md(r['group'])} | {_md(r['test'])} | **{_md(r['decision'])}** | {_change(r, m)} | "
                f"{_interval(r, m, level)} | {p} | {decide} |"
            )
    if within:
        out += [
            "",
            f"Within the gate ({len(within)}): "
            + ", ".join(_md(f"{r['group']} {r['test']}") for r in within),
        ]
    return "\n".join(out)


def brief(value: Any) -> str:
    """A plan, a mix or a version as a reader wants it in a warning (not a raw dict)."""
    if isinstance(value, Mapping) and "phases" in value:  # a plan: "warmup 2 s @ 50/s → ..."
        return " → ".join(
            f"{p.get('name')} {p.get('duration'):g} s @ "
            + (f"{p['rate']:g}/s" if p.get("rate") is not None else f"{p.get('concurrency')} users")
            for p in value["phases"]
        )
    if isinstance(value, list) and value and isinstance(value[0], Mapping):  # a mix
        return ", ".join(f"{e.get('name')} ×{e.get('weight')}" for e in value)
    return repr(value)


def meta_warnings(b: Mapping[str, Any], c: Mapping[str, Any]) -> list[str]:
    """What differs between the two runs' setups (plan, mix, target version, duration)."""
    out = []
    for key, label in (("plan", "plans"), ("mix", "request mixes"), ("target_version", "target versions")):
        if key in b and key in c and b[key] != c[key]:
            out.append(f"different {label}: baseline {brief(b[key])}, candidate {brief(c[key])}")
    db, dc = b.get("duration_s"), c.get("duration_s")
    if db and dc and abs(dc - db) / db > 0.20:
        out.append(f"durations differ by more than 20%: baseline {db:g} s, candidate {dc:g} s")
    return out
