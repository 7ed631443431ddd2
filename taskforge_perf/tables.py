"""Frames as tables a reader can send: units, percentages, thousands separators, no quotes.

``display_table`` formats a Polars frame with great_tables (Polars' ``DataFrame.style``): column
names become labels with their unit (``p95_ms`` -> "p95 (ms)"), fractions named ``*rate*``,
``share`` or ``*_rel*`` become percentages, counts get thousands separators, missing values show as
"–", and text is never truncated. The result renders as HTML in notebooks and in reports.

>>> import polars as pl
>>> gt = display_table(pl.DataFrame({"endpoint": ["GET /a"], "count": [12_345], "error_rate": [0.04]}))
>>> "12,345" in gt.as_raw_html() and "4.0%" in gt.as_raw_html()
True
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import polars as pl

__all__ = ["VERTICAL_AFTER", "column_label", "display_table", "vertical"]

#: A one-row frame wider than this many columns is shown as measure/value rows.
VERTICAL_AFTER = 8

_PERCENT = re.compile(r"(^|_)(rate|share|ratio)($|_)|_rel($|_)|^cpu|_pct$")
_SIGNED = re.compile(r"_rel($|_)|_delta($|_)")
_UNITS = (("_ms", "ms"), ("_s", "s"), ("_rps", "req/s"), ("_bytes", "bytes"))


def column_label(name: str) -> str:
    """``p95_ms`` -> "p95 (ms)", ``resp_p99_ms`` -> "resp p99 (ms)", ``rps`` -> "req/s"."""
    if name == "rps":
        return "req/s"
    if name == "p99_9_ms":
        return "p99.9 (ms)"
    if name.endswith("_per_s"):
        return name.removesuffix("_per_s").replace("_", " ") + " /s"
    for suffix, unit in _UNITS:
        if name.endswith(suffix) and len(name) > len(suffix):
            base = name[: -len(suffix)].replace("p99_9", "p99.9").replace("_", " ")
            return f"{base} ({unit})"
    return name.replace("_", " ")


def vertical(row: pl.DataFrame) -> pl.DataFrame:
    """A one-row frame as ``measure``/``value`` rows (text: counts with separators, fractions as %)."""
    out = []
    for c, v in row.row(0, named=True).items():
        if v is None:
            text = "–"
        elif isinstance(v, bool):
            text = "yes" if v else "no"
        elif isinstance(v, int):
            text = f"{v:,}"
        elif isinstance(v, float):
            text = f"{v:.1%}" if _PERCENT.search(c) else f"{v:,.2f}"
        else:
            text = _text(v)
        out.append({"measure": column_label(c), "value": text})
    return pl.DataFrame(out, schema={"measure": pl.String, "value": pl.String})


def _plain(df: pl.DataFrame) -> pl.DataFrame:
    """Categoricals, enums and nested values as plain text (great_tables formats scalars)."""
    fixes = []
    for c, t in df.schema.items():
        if isinstance(t, pl.Categorical | pl.Enum):
            fixes.append(pl.col(c).cast(pl.String))
        elif isinstance(t, pl.Datetime):
            fixes.append(pl.col(c).dt.strftime("%Y-%m-%d %H:%M:%S"))
        elif t == pl.Boolean:
            fixes.append(pl.col(c).replace_strict({True: "yes", False: "no"}, return_dtype=pl.String))
        elif isinstance(t, pl.List | pl.Array | pl.Struct | pl.Object):
            fixes.append(pl.col(c).map_elements(_text, return_dtype=pl.String))
    return df.with_columns(fixes) if fixes else df


def _text(v: Any) -> str:
    if isinstance(v, pl.Series):
        v = v.to_list()
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items() if x is not None)
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v)
    return str(v)


def display_table(
    frame: pl.DataFrame | pl.LazyFrame,
    *,
    title: str | None = None,
    subtitle: str | None = None,
    columns: Sequence[str] | None = None,
    max_rows: int = 200,
    percent: Sequence[str] = (),
) -> Any:
    """A great_tables ``GT`` of ``frame`` with units, percentages and separators (see module doc).

    ``columns`` picks (and orders) the columns that exist; at most ``max_rows`` rows are shown
    (the title says how many were left out). ``percent``: more columns holding fractions.
    """
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    if columns is not None:
        df = df.select([c for c in columns if c in df.columns])
    if df.height == 1 and df.width > VERTICAL_AFTER:
        df = vertical(df)
    note = None
    if df.height > max_rows:
        note = f"first {max_rows:,} of {df.height:,} rows"
        df = df.head(max_rows)
    df = _plain(df)
    gt = df.style
    if title or note:
        gt = gt.tab_header(title=title or "", subtitle=" · ".join(x for x in (subtitle, note) if x) or None)
    for c, t in df.schema.items():
        if t.is_integer():
            gt = gt.fmt_integer(columns=c)
        elif t.is_float():
            if c.startswith("p_") or c in ("p", "p_value"):
                gt = gt.fmt_number(columns=c, n_sigfig=2)
            elif _PERCENT.search(c) or c in percent:
                gt = gt.fmt_percent(columns=c, decimals=1, force_sign=bool(_SIGNED.search(c)))
            else:
                gt = gt.fmt_number(
                    columns=c, decimals=2 if c.endswith("_ms") else 1, force_sign=bool(_SIGNED.search(c))
                )
    labels: dict[str, Any] = {c: column_label(c) for c in df.columns}
    gt = gt.cols_label(labels).sub_missing(missing_text="–")
    return gt.tab_options(table_font_size="13px", column_labels_font_weight="bold", data_row_padding="3px")
