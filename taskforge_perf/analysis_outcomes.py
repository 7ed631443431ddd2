"""Outcome counts of HTTP rows and the run's headline (load errors only). Pure Polars.

Outcome classes (``schema``): *answered* (a complete response, any status), *target failure* (no
complete response: refused, reset, timeout, ...), *tester-side* (``dropped``, ``cancelled``,
``auth``, ``client``: counted on their own as "not sent", never as errors of the target).
Setup and teardown rows (sign-up, login, logout) are not load: their non-2xx answers (a 409 for a
user that exists, the real system's logout 401) are *auth outcomes*, shown apart from load errors.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from taskforge_perf.analysis_core import (
    By,
    Frame,
    _keys,
    _lazy,
    _sort_keys,
    error_expr,
    load_expr,
    not_sent_expr,
)
from taskforge_perf.schema import TESTER_SIDE_KINDS, answered_expr, outcome_expr

__all__ = ["headline", "headline_lines", "not_sent_text", "outcomes"]


def outcomes(events: Frame, *, by: By = None) -> pl.DataFrame:
    """Rows per outcome class and tester-side kind, per group (every row counted once).

    Columns: the ``by`` keys, ``count``, ``answered``, ``errors`` (target-side: answered 4xx/5xx
    and target failures), ``target_failures`` (no complete response: refused, reset, timeout,
    protocol, bad_body, ...), ``not_sent`` and its parts ``dropped``, ``cancelled``, ``auth``,
    ``client``. ``count = answered + target_failures + not_sent``.

    >>> from taskforge_perf.synthetic import synthetic_events
    >>> outcomes(synthetic_events(1_000, seed=1, dropped_fraction=0.1))["dropped"].item() > 0
    True
    """
    keys = _keys(by)
    err = pl.col("error").cast(pl.String)
    aggs = [
        pl.len().cast(pl.UInt64).alias("count"),
        answered_expr().sum().cast(pl.UInt64).alias("answered"),
        error_expr().sum().cast(pl.UInt64).alias("errors"),
        (outcome_expr() == "target_failure").sum().cast(pl.UInt64).alias("target_failures"),
        not_sent_expr().sum().cast(pl.UInt64).alias("not_sent"),
        *[(err == k).fill_null(False).sum().cast(pl.UInt64).alias(k) for k in TESTER_SIDE_KINDS],
    ]
    lf = _lazy(events)
    df = lf.group_by(keys).agg(aggs).collect() if keys else lf.select(aggs).collect()
    return _sort_keys(df, keys)


def not_sent_text(events: Frame) -> str:
    """The tester-side rows in one line, e.g. ``"not sent: 259 dropped, 200 cancelled"``
    (``"not sent: 0"`` when every request was sent)."""
    o = outcomes(events).row(0, named=True)
    parts = [f"{o[k]:,} {k}" for k in TESTER_SIDE_KINDS if o[k]]
    return "not sent: " + (", ".join(parts) if parts else "0")


def headline(events: Frame) -> dict[str, Any]:
    """The run's headline counts from its rows: load errors only, setup/teardown apart.

    Keys: ``requests`` (load rows), ``answered``, ``errors`` ({kind: n}, target-side errors of
    the load), ``not_sent`` ({kind: n}, tester-side rows of the load) and ``auth_outcomes``
    ({"POST /auth/signup 409": n, ...}: setup/teardown rows that were not 2xx, such as a sign-up
    of an existing user or the real system's logout 401; expected outcomes, not load errors).
    """
    lf = _lazy(events)
    load = lf.filter(load_expr())
    err = pl.col("error").cast(pl.String)
    kinds = (
        load.filter(pl.col("error").is_not_null())
        .group_by(kind=err, tester=not_sent_expr())
        .agg(pl.len().alias("n"))
        .collect()
        .sort("n", "kind", descending=[True, False])
    )
    counts = load.select(pl.len().alias("requests"), answered_expr().sum().alias("answered")).collect()
    aux = (
        lf.filter(~load_expr() & ((pl.col("status") < 200) | (pl.col("status") >= 300)))
        .group_by(pl.col("endpoint").cast(pl.String), "status")
        .agg(pl.len().alias("n"))
        .collect()
        .sort("endpoint", "status")
    )
    return {
        "requests": int(counts["requests"][0]),
        "answered": int(counts["answered"][0] or 0),
        "errors": {r["kind"]: r["n"] for r in kinds.iter_rows(named=True) if not r["tester"]},
        "not_sent": {r["kind"]: r["n"] for r in kinds.iter_rows(named=True) if r["tester"]},
        "auth_outcomes": {f"{r['endpoint']} {r['status']}": r["n"] for r in aux.iter_rows(named=True)},
    }


def headline_lines(events: Frame) -> list[str]:
    """``headline`` as text: load requests and errors, what was not sent, auth outcomes.

    >>> from taskforge_perf.synthetic import synthetic_events
    >>> headline_lines(synthetic_events(100, seed=1, error_fraction=0))[0]
    '100 requests (100 answered), 0 errors'
    """
    h = headline(events)
    n_err = sum(h["errors"].values())
    err = f"{n_err:,} errors" + (f" {h['errors']}" if n_err else "")
    lines = [f"{h['requests']:,} requests ({h['answered']:,} answered), {err}"]
    if h["not_sent"]:
        lines.append("not sent: " + ", ".join(f"{v:,} {k}" for k, v in h["not_sent"].items()))
    if h["auth_outcomes"]:
        parts = ", ".join(f"{k} x{v:,}" for k, v in h["auth_outcomes"].items())
        lines.append(f"auth outcomes (setup/teardown, not load errors): {parts}")
    return lines
