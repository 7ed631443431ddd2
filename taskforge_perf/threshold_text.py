"""The text side of thresholds: scope names quoted when needed, scanned back, and numbers written
so that they read back exactly. Pure; used by ``Threshold.parse`` and ``str(Threshold)``.

>>> quote_name("step 1 (100/s)")
'"step 1 (100/s)"'
>>> scan_scope('(POST /tasks, phase="step 1 (100/s)") < 1ms', 1, "")
([(None, 'POST /tasks'), ('phase', 'step 1 (100/s)')], 37)
"""

from __future__ import annotations

import re

from taskforge_perf.errors import ConfigError

__all__ = ["HEAD", "TAIL", "TIME_UNITS", "ThresholdError", "number_text", "quote_name", "scan_scope"]


class ThresholdError(ConfigError):
    """An invalid threshold; the message names the field and the fix."""


TIME_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}
HEAD = re.compile(r"\s*(?P<metric>[A-Za-z_][\w.]*)\s*")
TAIL = re.compile(
    r"\s*(?P<op><=|>=|==|<|>)\s*"
    r"(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>[A-Za-zµ%/]*)\s*$"
)
_KEY = re.compile(r"\s*(?P<key>phase|endpoint|type|task_type)\s*=\s*")
_SPECIAL = frozenset("(),=\"'\\")


def quote_name(name: str) -> str:
    """``name`` as written in a threshold's scope: bare when that reads back, else quoted."""
    if name == name.strip() and not any(c in _SPECIAL for c in name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scan_scope(text: str, i: int, hint: str) -> tuple[list[tuple[str | None, str]], int]:
    """Read the scope after ``(`` up to its ``)``: ``[(key or None, value)]`` and the index after.

    Values are quoted strings (``"..."``/``'...'`` with backslash escapes) or bare text, which
    may hold balanced parentheses (so ``phase=step 1 (100/s)`` written before quoting reads too)
    but no comma.
    """
    out: list[tuple[str | None, str]] = []
    n = len(text)
    while True:
        km = _KEY.match(text, i)
        key = km["key"] if km else None
        j = km.end() if km else i
        while j < n and text[j].isspace():
            j += 1
        if j < n and text[j] in "\"'":
            q, j, buf = text[j], j + 1, []
            while j < n and text[j] != q:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ThresholdError(f"threshold {text!r}: a quoted name is not closed; {hint}")
            value, j = "".join(buf), j + 1
            while j < n and text[j].isspace():
                j += 1
        else:
            start, depth = j, 0
            while j < n and not (depth == 0 and text[j] in ",)"):
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            value = text[start:j].strip()
        if j >= n:
            raise ThresholdError(f"threshold {text!r}: the scope's '(' is not closed; {hint}")
        if value or key is not None:
            if not value:
                raise ThresholdError(f"threshold {text!r}: {key}= needs a name; {hint}")
            out.append((key, value))
        if text[j] == ")":
            return out, j + 1
        if text[j] != ",":
            raise ThresholdError(f"threshold {text!r}: expected ',' or ')' after {value!r}; {hint}")
        i = j + 1


def number_text(x: float) -> str:
    """``x`` short (12 significant digits) when that reads back exactly, else in full."""
    short = f"{x:.12g}"
    return short if float(short) == x else repr(x)
