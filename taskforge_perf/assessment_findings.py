"""Who stopped keeping up, the target or the tester? Per-phase attribution and the sentences the
report's verdict box and the CLI print beside pass/fail. Pure.

A phase's load goes asked -> offered -> achieved:

- **asked**: the plan's rate (open model);
- **offered**: what the tester put to the target: every row of the phase except those the tester
  itself did not send (``auth``, ``client``, and ``dropped`` when the engine's counters show the
  phase never hit the in-flight cap; a request held behind a full cap waited for the *target* to
  answer, so it counts as offered);
- **achieved**: answered responses completed inside the phase's planned window.

The *target* stopped keeping up (the **breaking point**) where achieved falls more than
``SHORTFALL`` below what was offered (and asked), a threshold fails, nothing offered was
answered, or the task side grades worst. The *tester* could not keep up where it offered more than
``SHORTFALL`` less than asked (or nothing at all), or where the generator was saturated by its
own work (``meta["generator"]`` with a ``"tester"`` cause, located by ``run.health``'s intervals
of that phase): then the phase's figures measure the tester, and the phase is never the target's
breaking point. A generator slowed by the *machine* (waiting for a CPU) is not the tester's own
limit: the run carries its warning, and a shortfall on load that was offered stays the target's.

>>> findings_from([{"phase": "step 2", "limited_by": "target", "breaking_point": True,
...                 "asked_rps": 200.0, "offered_rps": 200.0, "achieved_rps": 98.0,
...                 "thresholds_failed": [], "answered": 196, "tester_saturated": False}])
["capacity reached at phase 'step 2': the target answered 98 of 200 req/s asked (49%)"]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

__all__ = ["SHORTFALL", "findings", "findings_from", "generator_limit", "tester_saturated_phases"]

#: Achieved (or offered) throughput more than this fraction below the asked one is a shortfall.
SHORTFALL = 0.05

# The generator's limits when meta["generator"] does not record them (engine.health's values).
_LAG_LIMIT_MS, _CPU_LIMIT, _MIN_CPU_INTERVAL_S = 5.0, 0.90, 0.2


def tester_saturated_phases(
    generator: Mapping[str, Any] | None, health: pl.DataFrame | None, phases: Iterable[str]
) -> set[str]:
    """The phases in which the generator was saturated by its own work.

    None unless the run as a whole was (``generator["saturated"]`` with a ``"tester"`` cause);
    then the phases of ``health`` intervals past the own-lag or CPU limit, or every phase when the
    health rows do not name phases (an old run).
    """
    g = generator or {}
    if not g.get("saturated") or "tester" not in (g.get("causes") or ()):
        return set()
    names = set(phases)
    if health is None or not health.height or health["phase"].drop_nulls().is_empty():
        return names
    lim = g.get("limits") or {}
    lag = float(lim.get("lag_p99_ms", _LAG_LIMIT_MS))
    cpu = float(lim.get("cpu_max", _CPU_LIMIT))
    hot = health.filter(
        (pl.col("own_lag_p99_ms") > lag)
        | ((pl.col("cpu") > cpu) & (pl.col("interval_s") >= _MIN_CPU_INTERVAL_S))
    )
    return {str(p) for p in hot["phase"].drop_nulls().to_list()} & names


def attribute(
    *,
    asked: float | None,
    offered: float | None,
    achieved: float | None,
    answered: int,
    sent_any: bool,
    thresholds_failed: bool,
    tasks_bad: bool,
    tester_saturated: bool,
) -> str | None:
    """``"target"``, ``"tester"`` or None (the phase held): see the module docstring."""
    ref = None if asked is None or asked <= 0 else min(asked, offered if offered is not None else asked)
    target_short = ref is not None and ref > 0 and (achieved or 0.0) < (1 - SHORTFALL) * ref
    tester_short = asked is not None and asked > 0 and (offered or 0.0) < (1 - SHORTFALL) * asked
    silent = not answered
    target = thresholds_failed or tasks_bad or target_short or (silent and sent_any)
    tester = tester_short or (silent and not sent_any)
    if tester_saturated and (target or tester):
        return "tester"  # the phase's figures include the tester's own queueing
    if target:
        return "target"
    return "tester" if tester else None


def _rate(x: Any) -> str:
    return "–" if x is None else f"{x:,.0f}"


def _target_text(r: Mapping[str, Any]) -> str:
    name, asked, offered, achieved = (
        r["phase"],
        r.get("asked_rps"),
        r.get("offered_rps"),
        r.get("achieved_rps"),
    )
    parts: list[str] = []
    ref = None if asked is None or asked <= 0 else min(asked, offered if offered is not None else asked)
    if asked is not None and ref is not None and (achieved or 0.0) < (1 - SHORTFALL) * ref:
        of = (
            f"{_rate(asked)} req/s asked"
            if offered is None or offered >= asked * (1 - SHORTFALL)
            else f"{_rate(offered)} req/s sent ({_rate(asked)} asked)"
        )
        share = f" ({(achieved or 0.0) / ref:.0%})"
        parts.append(f"the target answered {_rate(achieved or 0.0)} of {of}{share}")
    elif not r.get("answered"):
        parts.append("nothing sent in it was answered")
    failed = list(r.get("thresholds_failed") or [])
    if failed:
        parts.append("threshold failed there: " + ", ".join(failed))
    if r.get("grade_tasks") == "needs improvement" or r.get("grade_task_latency") == "slow":
        done, p95 = r.get("task_completion"), r.get("task_p95_ms")
        what = [f"{done:.0%} of tasks completed" if done is not None else None]
        what.append(f"task p95 {p95 / 1000:,.1f} s" if p95 is not None else None)
        parts.append("task side graded worst (" + ", ".join(w for w in what if w) + ")")
    head = "capacity reached" if parts and parts[0].startswith("the target answered") else "breaking point"
    return f"{head} at phase {name!r}: " + "; ".join(parts or ["the target stopped keeping up"])


def _tester_text(r: Mapping[str, Any]) -> str:
    name, asked, offered = r["phase"], r.get("asked_rps"), r.get("offered_rps")
    if not r.get("requests"):
        why = "no request was recorded in it (the run stopped before it, or nothing could be sent)"
    elif asked is not None and asked > 0 and (offered or 0.0) < (1 - SHORTFALL) * asked:
        why = f"it sent {_rate(offered or 0.0)} of {_rate(asked)} req/s asked"
    elif not r.get("answered") and not offered:
        why = "it sent nothing"
    else:
        why = "the figures of this phase include its own queueing"
    if r.get("tester_saturated"):
        why += " (the load generator was saturated by its own work)"
    return f"the tester could not keep up at phase {name!r}: {why}; not a breaking point of the target"


def findings_from(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The sentences for assessment rows (dicts): the first tester-limited phase, the breaking
    point; empty when every phase held."""
    out: list[str] = []
    tester_seen = target_seen = False
    for r in rows:
        by = r.get("limited_by")
        if by == "tester" and not tester_seen and not target_seen:
            out.append(_tester_text(r))
            tester_seen = True
        elif by == "target" and r.get("breaking_point") and not target_seen:
            out.append(_target_text(r))
            target_seen = True
    return out


def findings(assessment: pl.DataFrame) -> list[str]:
    """What the assessment says about capacity, as sentences for the verdict box and the CLI:
    ``capacity reached at phase 'step 3': the target answered 160 of 200 req/s asked (80%)`` and/or
    ``the tester could not keep up at phase 'step 4': it sent 150 of 250 req/s asked ...``.
    Empty when every phase held. Stated beside pass/fail, never instead of it: thresholds can pass
    on a run whose last step found the target's capacity."""
    return findings_from(assessment.iter_rows(named=True)) if "limited_by" in assessment.columns else []


def generator_limit(assessment: pl.DataFrame) -> str | None:
    """The first phase in which the tester (the load generator) could not keep up, or None: as
    ``capacity``'s ``generator_limit``, a limit of the tester, not a capacity of the target."""
    if "limited_by" not in assessment.columns:
        return None
    hit = assessment.filter(pl.col("limited_by") == "tester")
    return hit["phase"][0] if hit.height else None
