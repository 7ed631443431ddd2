"""The pieces of a report a reader needs first: the verdict box, what was run, and where.

``verdict(run, cmp)`` decides passed / failed / inconclusive from the run's thresholds, how it
stopped, the comparison's verdict and the generator's health; ``verdict_html`` draws it as a box
of badges (each threshold with its measured value). ``configuration`` and ``environment`` are the
rows of "what was run, against what, from where". Pure functions of a ``Run``; HTML only.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from taskforge_perf.chart_style import PALETTE
from taskforge_perf.error_samples import samples_frame

__all__ = [
    "Verdict",
    "configuration",
    "environment",
    "error_examples",
    "error_examples_html",
    "message_html",
    "threshold_table",
    "verdict",
    "verdict_html",
]

_COLOURS = {"passed": "#2e7d32", "failed": PALETTE["failed"], "inconclusive": PALETTE["degraded"]}


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The run's overall status and the badges that justify it."""

    status: str  # "passed", "failed" or "inconclusive"
    reasons: tuple[str, ...]
    badges: tuple[tuple[str, str, str], ...] = field(default=())  # (label, value, state: ok/failed/warn)
    #: Capacity findings stated beside pass/fail (``assessment.findings``): where the target's
    #: capacity was reached, or where the tester could not keep up.
    findings: tuple[str, ...] = field(default=())


def _threshold_badges(run: Any) -> list[tuple[str, str, str]]:
    th = run.thresholds()
    out = []
    for row in th.iter_rows(named=True) if th.height else []:
        name = str(row.get("threshold") or "threshold")
        measured = _measured(row.get("actual"), row.get("unit"))
        out.append((name, f"→ {measured}", "ok" if row.get("passed") else "failed"))
    return out


def _measured(actual: Any, unit: Any) -> str:
    if actual is None:
        return "no data"
    if unit == "ratio":
        return f"{actual:.2%}"
    return f"{actual:,.1f} {unit or ''}".strip()


def threshold_table(th: pl.DataFrame) -> pl.DataFrame:
    """Thresholds as a reader wants them: the check, its scope, the measured value, pass/FAIL."""
    rows = [
        {
            "result": "pass" if r.get("passed") else "FAIL",
            "threshold": str(r.get("threshold")),
            "scope": str(r.get("scope") or "run"),
            "measured": _measured(r.get("actual"), r.get("unit")),
            "rows": r.get("rows"),
            "note": r.get("note"),
        }
        for r in th.iter_rows(named=True)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "result": pl.String,
            "threshold": pl.String,
            "scope": pl.String,
            "measured": pl.String,
            "rows": pl.Int64,
            "note": pl.String,
        },
    )


def task_completion(run: Any) -> tuple[int, int] | None:
    """(tasks that reached a final status over WebSocket, tasks created), or None without tasks."""
    created = int((run.meta.get("counters") or {}).get("tasks_created") or 0)
    if not created:
        return None
    ws = run.ws_events
    if not ws.height:
        return 0, created
    done = (
        ws.filter(
            (pl.col("kind").cast(pl.String) == "message")
            & pl.col("status").cast(pl.String).is_in(["completed", "failed"])
        )
        .select(pl.col("task_id").n_unique())
        .item()
    )
    return int(done), created


def _findings(run: Any) -> tuple[list[str], str | None, str | None]:
    """The assessment's capacity findings, the phase where the tester could not keep up and the
    target's breaking point."""
    from taskforge_perf.assessment import breaking_point, findings, generator_limit

    if not run.meta.get("plan"):
        return [], None, None
    try:
        a = run.assessment()
    except (KeyError, TypeError, ValueError):  # an old run whose plan or thresholds do not parse
        return [], None, None
    return findings(a), generator_limit(a), breaking_point(a)


def verdict(run: Any, cmp: Any = None) -> Verdict:
    """Failed if a threshold failed, the run did not complete or the comparison failed;
    inconclusive if the generator was saturated, the tester could not send the load a phase asked
    for, the comparison was inconclusive or nothing was checked at all; else passed.

    Capacity is a finding beside that status, not a part of it: a run whose thresholds pass can
    still have reached the target's capacity at some phase (``findings``: "capacity reached at
    phase 'step 3': the target answered 160 of 200 req/s asked (80%)"); where the tester could not
    keep up the finding says so instead, and the target is not blamed."""
    badges = _threshold_badges(run)
    reasons: list[str] = []
    failed = [b for b in badges if b[2] == "failed"]
    if failed:
        reasons.append(f"{len(failed)} of {len(badges)} thresholds failed")
    stopped = run.meta.get("stopped")
    if stopped != "completed":
        reasons.append(f"the run did not complete (stopped: {stopped})")
        badges.append(("run", f"stopped: {stopped}", "failed"))
    status = "failed" if reasons else "passed"
    if cmp is not None:
        v = cmp.verdict
        state = {"passed": "ok", "failed": "failed"}.get(v.status, "warn")
        badges.append(("vs baseline", v.status, state))
        if v.status == "failed":
            status = "failed"
            more = f" (+{len(v.reasons) - 1} more)" if len(v.reasons) > 1 else ""
            reasons.append(f"regression vs the baseline: {v.reasons[0]}{more}" if v.reasons else "regression")
        elif v.status != "passed" and status == "passed":
            status = "inconclusive"
            reasons.append(f"the comparison with the baseline is {v.status}")
    warning = run.generator_warning()
    if warning:
        badges.append(("generator", "saturated", "warn"))
    elif run.meta.get("generator"):
        badges.append(("generator", "kept up", "ok"))
    else:
        badges.append(("generator", "health not recorded", "warn"))
    if warning:
        reasons.append(warning)
        status = "inconclusive" if status == "passed" else status
    found, tester_phase, broke = _findings(run)
    if tester_phase is not None:
        badges.append(("load", f"tester could not keep up at {tester_phase}", "warn"))
    if broke is not None:
        capacity = any(f.startswith("capacity reached") for f in found)
        badges.append(
            ("capacity", f"reached at {broke}", "warn") if capacity else ("breaking point", broke, "warn")
        )
    if tester_phase is not None and status == "passed":
        status = "inconclusive"
        reasons.append(f"the tester could not send the load asked for at phase {tester_phase!r}")
    tasks = task_completion(run)
    if tasks is not None:
        done, created = tasks
        tracked = bool(run.ws_events.height)
        label = f"{done:,} / {created:,} finished" if tracked else f"{created:,} created (not tracked)"
        badges.append(("tasks", label, "ok" if not tracked or done == created else "warn"))
    if not _threshold_badges(run) and cmp is None and status == "passed":
        status = "inconclusive"
        reasons.append("no thresholds and no baseline: nothing was checked")
    if status == "passed":
        reasons.append("every threshold passed" + (" and no regression vs the baseline" if cmp else ""))
    return Verdict(status=status, reasons=tuple(reasons), badges=tuple(badges), findings=tuple(found))


def _badge(label: str, value: str, state: str) -> str:
    colour = {"ok": "#2e7d32", "failed": PALETTE["failed"], "warn": PALETTE["degraded"]}[state]
    mark = {"ok": "✔", "failed": "✘", "warn": "!"}[state]
    return (
        f"<span style='display:inline-block;margin:2px 4px 2px 0;padding:2px 8px;border-radius:10px;"
        f"border:1px solid {colour};color:{colour};font-size:13px'>{mark} <b>{html.escape(label)}</b>"
        f" {html.escape(value)}</span>"
    )


def verdict_html(run: Any, cmp: Any = None, *, title: str | None = None) -> str:
    """The box a reader sees first: status, why, a badge per check, what ran against what."""
    v = verdict(run, cmp)
    colour = _COLOURS[v.status]
    target = (run.meta.get("target") or {}).get("base_url", "–")
    version = run.meta.get("target_version") or (run.meta.get("target") or {}).get("version") or "unknown"
    started = dt.datetime.fromtimestamp(run.meta.get("wall_start_ns", 0) / 1e9, dt.UTC)
    what = (
        f"<b>{html.escape(run.name)}</b> against <code>{html.escape(str(target))}</code> "
        f"(version {html.escape(str(version))}), {run.duration_s:,.0f} s from "
        f"{started:%Y-%m-%d %H:%M} UTC — {html.escape(plan_text(run))}"
    )
    return (
        f"<div class='tfp-verdict' style='border:3px solid {colour};border-radius:8px;padding:10px 14px;"
        f"margin:8px 0'><div style='font-size:26px;font-weight:700;color:{colour}'>{v.status.upper()}</div>"
        f"<div style='margin:4px 0 6px 0'>{html.escape('; '.join(v.reasons))}</div>"
        + "".join(
            f"<div class='tfp-finding' style='margin:0 0 6px 0'><b>Finding:</b> {html.escape(f)}</div>"
            for f in v.findings
        )
        + f"<div>{''.join(_badge(*b) for b in v.badges)}</div>"
        f"<div style='margin-top:6px;color:#444'>{what}</div></div>"
    )


def plan_text(run: Any) -> str:
    """``warmup 2 s @ 50 req/s → peak 8 s @ 150 req/s`` (or users for a closed model)."""
    try:
        phases = run.plan.phases
    except Exception:  # an old run without a plan in its meta
        return "no plan recorded"
    parts = []
    for p in phases:
        level = f"{p.rate:g} req/s" if p.rate is not None else f"{p.concurrency} users"
        think = f", think {p.think_time:g} s" if getattr(p, "think_time", 0) else ""
        parts.append(f"{p.name} {p.duration:g} s @ {level}{think}")
    return " → ".join(parts)


def configuration(run: Any) -> list[tuple[str, str]]:
    """What was run: plan, mix weights, users, seed, in-flight cap, WebSocket options, client."""
    m = run.meta
    mix = m.get("mix") or []
    total = sum(float(e.get("weight") or 0) for e in mix) or 1.0
    mix_text = ", ".join(f"{e.get('name')} {float(e.get('weight') or 0) / total:.0%}" for e in mix)
    users = m.get("users") or {}
    ws = m.get("ws") or {}
    ws_text = (
        ", ".join(f"{k}={v}" for k, v in ws.items() if not isinstance(v, dict | list) and v is not None)
        if ws
        else "none (no WebSocket connections asked)"
    )
    rows = [
        ("Plan", plan_text(run)),
        ("Model", str((m.get("plan") or {}).get("model", "–"))),
        ("Request mix (weights)", mix_text or "–"),
        ("Users", f"{users.get('count', '–')} ({users.get('email_prefix', '')}…@{users.get('domain', '')})"),
        ("Seed", "not set (random)" if m.get("seed") is None else str(m["seed"])),
        ("In-flight cap", f"{m.get('max_in_flight', '–'):,}" if m.get("max_in_flight") else "–"),
        ("HTTP client", str(m.get("http_client", "–"))),
        ("Workers", str(m.get("workers", 1))),
        ("WebSocket", ws_text),
        ("Stopped", str(m.get("stopped"))),
    ]
    return rows


def environment(run: Any) -> list[tuple[str, str]]:
    """Where it ran: target and its version, host, CPUs, OS, library versions."""
    m = run.meta
    env = m.get("environment") or {}
    target = m.get("target") or {}
    libs = env.get("libraries") or m.get("versions") or {}
    version = m.get("target_version") or target.get("version")
    cpus = env.get("cpus")
    return [
        ("Target", f"{target.get('base_url', '–')} (WebSocket: {target.get('ws_url') or '–'})"),
        ("Target version", str(version) if version else "not reported by the target"),
        ("Host", str(env.get("host", "not recorded (run saved by an older version)"))),
        (
            "CPUs",
            f"{cpus} ({env.get('cpus_usable', cpus)} usable by the tester)" if cpus else "not recorded",
        ),
        ("OS", f"{env.get('os', '–')} {env.get('machine', '')}".strip()),
        ("Python", str(env.get("python") or (m.get("versions") or {}).get("python", "–"))),
        ("Libraries", ", ".join(f"{k} {v}" for k, v in libs.items() if k != "python") or "–"),
    ]


def rows_html(rows: list[tuple[str, str]]) -> str:
    """A two-column key/value table (no truncation, text escaped)."""
    body = "".join(
        f"<tr><th style='text-align:left;padding:2px 12px 2px 0;vertical-align:top'>{html.escape(k)}</th>"
        f"<td style='text-align:left;padding:2px 0'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return f"<table class='tfp-kv'>{body}</table>"


def error_examples(run: Any, n: int = 10) -> pl.DataFrame:
    """The first failing request of each (error, status, endpoint): when, who, what it sent/got,
    and ``message``: what the target said (the first error sample's body text, or a transport
    failure's message; null for a run saved before samples were kept)."""
    from taskforge_perf.schema import outcome_expr

    ev = run.load_events()
    bad = ev.filter(pl.col("error").is_not_null())
    if not bad.height:
        return pl.DataFrame()
    out = (
        bad.sort("t_start")
        .with_columns(outcome=outcome_expr())
        .group_by("error", "status", "endpoint", maintain_order=True)
        .agg(
            pl.len().alias("count"),
            (pl.col("t_start").first() / 1e9).alias("first_at_s"),
            pl.col("user").first().cast(pl.String),
            pl.col("outcome").first(),
            ((pl.col("t_end") - pl.col("t_start")).first() / 1e6).alias("took_ms"),
        )
        .sort("count", descending=True)
        .head(n)
    )
    return _with_messages(out, samples_frame(run.meta))


def _with_messages(out: pl.DataFrame, samples: pl.DataFrame) -> pl.DataFrame:
    """``out`` with the first sample's message of its (error, status, endpoint), row order kept."""
    keys = ("_k_error", "_k_status", "_k_endpoint")
    first = (
        samples.sort("t_start")
        .group_by("error", "status", "endpoint", maintain_order=True)
        .agg(pl.col("message").first())
        .select(
            pl.col("error").alias(keys[0]),
            pl.col("status").alias(keys[1]),
            pl.col("endpoint").alias(keys[2]),
            "message",
        )
    )
    return (
        out.with_columns(
            pl.col("error").cast(pl.String).alias(keys[0]),
            pl.col("status").cast(pl.Int64).alias(keys[1]),
            pl.col("endpoint").cast(pl.String).alias(keys[2]),
        )
        .join(first, on=list(keys), how="left", maintain_order="left")
        .drop(keys)
    )


#: Characters of a message shown in the report's table; the whole text is one click away.
SHOWN_CHARS = 300


def message_html(message: str | None, shown: int = SHOWN_CHARS) -> str:
    """A message for an HTML cell: escaped, wrapped (never one endless line), the first ``shown``
    characters visible and the whole text in a ``<details>`` (cut before escaping, so no entity
    or tag is ever cut in half); "—" when there is none, "(empty body)" for an empty answer."""
    if message is None:
        return "—"
    if not message:
        return "<i>(empty body)</i>"
    wrap = "white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;margin:0"
    if len(message) <= shown:
        return f"<div style='{wrap}'>{html.escape(message)}</div>"
    return (
        f"<div style='{wrap}'>{html.escape(message[:shown])}…</div>"
        f"<details><summary>full text ({len(message):,} characters kept)</summary>"
        f"<div style='{wrap};font-family:monospace;font-size:12px'>{html.escape(message)}</div></details>"
    )


def error_examples_html(examples: pl.DataFrame) -> str:
    """``error_examples`` as an HTML table whose message column wraps (see ``message_html``)."""
    if not examples.height:
        return "<p>No failing requests.</p>"
    cols = [
        ("count", "count"),
        ("error", "error"),
        ("status", "status"),
        ("endpoint", "endpoint"),
        ("first_at_s", "first at (s)"),
        ("took_ms", "took (ms)"),
        ("message", "what the target said"),
    ]
    cell = "style='text-align:left;vertical-align:top;padding:3px 10px 3px 0;border-top:1px solid #ddd'"
    head = "".join(f"<th {cell}>{html.escape(label)}</th>" for _, label in cols)
    rows = []
    for r in examples.iter_rows(named=True):
        tds = []
        for c, _ in cols:
            v = r.get(c)
            if c == "message":
                text = message_html(v)
                tds.append(f"<td {cell} class='tfp-message' style='max-width:70ch'>{text}</td>")
                continue
            if isinstance(v, float):
                text = f"{v:,.3f}" if c == "first_at_s" else f"{v:,.1f}"
            elif isinstance(v, int) and c == "count":
                text = f"{v:,}"
            else:
                text = "—" if v is None else str(v)
            tds.append(f"<td {cell}>{html.escape(text)}</td>")
        rows.append(f"<tr>{''.join(tds)}</tr>")
    return (
        "<table class='tfp-errors' style='border-collapse:collapse;font-size:13px;table-layout:auto'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def traffic(run: Any) -> list[tuple[str, str]]:
    """Bytes sent and received over the load (HTTP bodies as counted by the client)."""
    ev = run.load_events()
    if not ev.height:
        return []
    b_in, b_out = ev.select(pl.col("bytes_in").sum(), pl.col("bytes_out").sum()).row(0)
    d = run.duration_s or 1.0
    return [
        ("Received", f"{_mb(b_in)} ({_mb(b_in / d)}/s)"),
        ("Sent", f"{_mb(b_out)} ({_mb(b_out / d)}/s)"),
    ]


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"
