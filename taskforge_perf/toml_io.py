"""Plans, mixes and thresholds as TOML files, built on the same constructors as the Python API.

``StressPlan.from_toml``, ``RequestMix.from_toml`` and ``Threshold.load_toml`` call the loaders
here. Errors are ``ConfigError`` (or its subclass the constructor raised) and name the file, the
line and the field, e.g. ``plan.toml, line 9, phases[1].rate: Phase 'peak': rate must be >= 0``.

plan.toml::

    recommended_users = 20           # optional
    [[phases]]
    name = "warmup"
    duration = 10
    rate = 50                        # or concurrency = 10 (+ think_time); ramp, ramp_from, websockets

mix.toml::

    [[endpoints]]
    task = "generate-pdf"            # POST /tasks of one task type
    weight = 30
    [[endpoints]]
    name = "GET /health"             # any request: name, method, path, weight, auth, json, headers
    method = "GET"
    path = "/health"
    weight = 10
    auth = false

thresholds.toml::

    thresholds = ["p95(POST /tasks generate-pdf) < 300ms", "error_rate < 1%"]
    [[threshold]]                    # the table form adds options
    expr = "max < 2s"
    abort_on_fail = true
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskforge_perf.errors import ConfigError

if TYPE_CHECKING:
    from taskforge_perf.mix import RequestMix
    from taskforge_perf.plan import StressPlan
    from taskforge_perf.thresholds import Threshold

#: A field path inside a document: keys and list indices, e.g. ("phases", 1, "rate").
FieldPath = tuple[str | int, ...]


class _FieldError(Exception):
    """Raised inside a builder: the field path and the underlying error."""

    def __init__(self, where: FieldPath, exc: Exception, needle: str | None = None) -> None:
        super().__init__(str(exc))
        self.where = where
        self.exc = exc
        self.needle = needle  # text to find when the field is one item of an inline list


def read_toml(path: str | Path, what: str) -> tuple[Path, str, dict[str, Any]]:
    """Read and parse a TOML file; a missing file or a syntax error names the file and the line."""
    if not isinstance(path, str | Path) or not str(path).strip():
        raise ConfigError(f"{what}: the path must be a file name (str or Path) (got {path!r})")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such {what} file; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the {what} file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        where = f", line {line}" if line else ""
        msg = getattr(exc, "msg", None) or str(exc)
        raise ConfigError(f"{p}{where}: not valid TOML ({msg}); fix the syntax there") from None
    return p, text, data


def _line_from_message(message: str) -> int | None:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None


def _field_text(where: FieldPath) -> str:
    out = ""
    for part in where:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def locate(text: str, where: FieldPath) -> int | None:
    """The 1-based line of a field in TOML text (best effort), e.g. ("phases", 1, "rate").

    Array-of-tables entries are found by counting their ``[[name]]`` headers; a key by its
    ``key =`` line after the entry's header. Falls back to the nearest enclosing entry.
    """
    lines = text.splitlines()
    start, found = 0, None
    i = 0
    while i < len(where):
        part = where[i]
        if isinstance(part, str) and i + 1 < len(where) and isinstance(where[i + 1], int):
            header = re.compile(rf"^\s*\[\[\s*{re.escape(part)}\s*\]\]")
            hits = [n for n in range(start, len(lines)) if header.match(lines[n])]
            idx = where[i + 1]
            assert isinstance(idx, int)
            if idx < len(hits):
                start = hits[idx]
                found = start + 1
            else:  # an inline array: the line of "part = [" is as close as we get
                key = _key_line(lines, part, start)
                return key if key is not None else found
            i += 2
            continue
        if isinstance(part, str):
            key = _key_line(lines, part, start)
            if key is not None:
                return key
        break
    return found


def _key_line(lines: Sequence[str], key: str, start: int) -> int | None:
    pat = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
    for n in range(start, len(lines)):
        if n > start and lines[n].lstrip().startswith("[") and start > 0:
            break  # the next table: the key is not in this entry
        if pat.match(lines[n]):
            return n + 1
    return None


def _build(path: Path, text: str, builder: Callable[[], Any]) -> Any:
    """Run a builder; re-raise its error with the file, the line and the field in front."""
    try:
        return builder()
    except _FieldError as fe:
        line = _find(text, fe.needle) if fe.needle else None
        line = line or locate(text, fe.where)
        prefix = f"{path}" + (f", line {line}" if line else "") + f", {_field_text(fe.where)}"
        cls = type(fe.exc) if isinstance(fe.exc, ConfigError) else ConfigError
        raise cls(f"{prefix}: {fe.exc}") from None


def _find(text: str, needle: str) -> int | None:
    for n, line in enumerate(text.splitlines()):
        if needle in line:
            return n + 1
    return None


def _guess_field(message: str, keys: Sequence[str]) -> str | None:
    """The key a constructor's message is about (the longest key named as a word)."""
    named = [k for k in keys if re.search(rf"(?<![\w.]){re.escape(k)}(?![\w])", message)]
    return max(named, key=len) if named else None


def _check_keys(where: FieldPath, d: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for k in d:
        if k not in allowed:
            raise _FieldError(
                (*where, k), ConfigError(f"unknown key {k!r}; use {', '.join(sorted(allowed))}")
            )


def _table_list(data: Mapping[str, Any], key: str, example: str) -> list[Any]:
    raw = data.get(key)
    if not isinstance(raw, list) or not raw:
        raise _FieldError(
            (key,), ConfigError(f"expected a non-empty list of [[{key}]] tables, e.g. {example}")
        )
    return raw


# --- plans -----------------------------------------------------------------------------------

_PLAN_KEYS = ("phases", "recommended_users", "preset")
_PHASE_KEYS = ("name", "duration", "rate", "concurrency", "ramp", "ramp_from", "think_time", "websockets")


def plan_from_dict(data: Mapping[str, Any]) -> StressPlan:
    """A StressPlan from a TOML-shaped mapping (``[[phases]]`` tables or ``preset = "dev"``)."""
    from taskforge_perf.plan import StressPlan

    _check_keys((), data, _PLAN_KEYS)
    if "preset" in data:
        if "phases" in data:
            raise _FieldError(("preset",), ConfigError("give either preset or [[phases]], not both"))
        try:
            return StressPlan.preset(data["preset"])
        except ConfigError as exc:
            raise _FieldError(("preset",), exc) from None
    phases = _table_list(data, "phases", '[[phases]] name = "load" duration = 60 rate = 100')
    for i, d in enumerate(phases):
        if not isinstance(d, Mapping):
            raise _FieldError(("phases", i), ConfigError("each phase must be a table"))
        _check_keys(("phases", i), d, _PHASE_KEYS)
        try:  # one phase at a time, so an error points at its table
            StressPlan.from_dict({"phases": [d]})
        except ConfigError as exc:
            key = _guess_field(str(exc), list(d))
            raise _FieldError(("phases", i, key) if key else ("phases", i), exc) from None
    try:
        return StressPlan.from_dict(dict(data))
    except ConfigError as exc:
        key = _guess_field(str(exc), ["recommended_users"])
        raise _FieldError((key,) if key else ("phases",), exc) from None


def plan_from_toml(path: str | Path) -> StressPlan:
    """Load a StressPlan from a TOML file (see the module docstring for the layout)."""
    p, text, data = read_toml(path, "plan")
    plan: StressPlan = _build(p, text, lambda: plan_from_dict(data))
    return plan


# --- mixes -----------------------------------------------------------------------------------

_ENDPOINT_KEYS = ("task", "name", "method", "path", "weight", "auth", "json", "headers", "creates_task")


def _static_body(body: Any) -> Callable[..., bytes]:
    raw = json.dumps(body, separators=(",", ":")).encode()

    def build(user: str, token: str | None, rng: Any) -> bytes:
        return raw

    return build


def mix_from_dict(data: Mapping[str, Any]) -> RequestMix:
    """A RequestMix from a TOML-shaped mapping (``[[endpoints]]`` tables)."""
    from taskforge_perf.mix import Endpoint, RequestMix, task_endpoint

    _check_keys((), data, ("endpoints",))
    raw = _table_list(data, "endpoints", '[[endpoints]] task = "generate-pdf" weight = 30')
    endpoints = []
    for i, d in enumerate(raw):
        where: FieldPath = ("endpoints", i)
        if not isinstance(d, Mapping):
            raise _FieldError(where, ConfigError("each endpoint must be a table"))
        _check_keys(where, d, _ENDPOINT_KEYS)
        try:
            if "task" in d:
                extra = sorted(set(d) - {"task", "weight"})
                if extra:
                    raise _FieldError(
                        (*where, extra[0]),
                        ConfigError(f"a task endpoint takes only task and weight (drop {extra[0]!r})"),
                    )
                endpoints.append(task_endpoint(d["task"], d.get("weight", 1.0)))
                continue
            missing = [k for k in ("name", "method", "path") if k not in d]
            if missing:
                raise _FieldError(
                    where,
                    ConfigError(
                        f"missing {', '.join(missing)}: give task = TYPE, or name, method and path "
                        '(e.g. name = "GET /health", method = "GET", path = "/health")'
                    ),
                )
            headers = dict(d.get("headers", {}))
            build = None
            if "json" in d:
                build = _static_body(d["json"])
                headers.setdefault("Content-Type", "application/json")
            endpoints.append(
                Endpoint(
                    d["name"],
                    d["method"],
                    d["path"],
                    d.get("weight", 1.0),
                    build=build,
                    auth=d.get("auth", True),
                    creates_task=d.get("creates_task", False),
                    headers=headers,
                )
            )
        except ConfigError as exc:
            key = _guess_field(str(exc), [k for k in d if k not in ("name",)]) or (
                "task" if "task" in d else None
            )
            raise _FieldError((*where, key) if key else where, exc) from None
    try:
        return RequestMix(endpoints)
    except ConfigError as exc:
        raise _FieldError(("endpoints",), exc) from None


def build_mix(data: Mapping[str, Any]) -> RequestMix:
    """``RequestMix.from_dict``: ``mix_from_dict`` with the field path in front of an error."""
    try:
        return mix_from_dict(data)
    except _FieldError as fe:
        cls = type(fe.exc) if isinstance(fe.exc, ConfigError) else ConfigError
        raise cls(f"{_field_text(fe.where) or 'mix'}: {fe.exc}") from None


def mix_from_toml(path: str | Path) -> RequestMix:
    """Load a RequestMix from a TOML file (see the module docstring for the layout)."""
    p, text, data = read_toml(path, "mix")
    mix: RequestMix = _build(p, text, lambda: mix_from_dict(data))
    return mix


# --- thresholds ------------------------------------------------------------------------------


def thresholds_from_dict(data: Mapping[str, Any]) -> list[Threshold]:
    """Thresholds from ``thresholds = ["..."]`` and/or ``[[threshold]]`` tables (expr, abort_on_fail)."""
    from taskforge_perf.thresholds import Threshold

    _check_keys((), data, ("thresholds", "threshold"))
    out: list[Threshold] = []
    texts = data.get("thresholds", [])
    if not isinstance(texts, list):
        raise _FieldError(
            ("thresholds",), ConfigError('expected a list of strings, e.g. ["error_rate < 1%"]')
        )
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise _FieldError(("thresholds", i), ConfigError(f"must be a string (got {t!r})"))
        try:
            out.append(Threshold.parse(t))
        except ConfigError as exc:
            raise _FieldError(("thresholds", i), exc, needle=t) from None
    tables = data.get("threshold", [])
    if not isinstance(tables, list):
        raise _FieldError(("threshold",), ConfigError("write each as a [[threshold]] table"))
    for i, d in enumerate(tables):
        where: FieldPath = ("threshold", i)
        if not isinstance(d, Mapping):
            raise _FieldError(where, ConfigError("each [[threshold]] must be a table"))
        _check_keys(where, d, ("expr", "abort_on_fail"))
        if not isinstance(d.get("expr"), str):
            raise _FieldError((*where, "expr"), ConfigError('expr = "p95 < 300ms" is required (a string)'))
        abort = d.get("abort_on_fail", False)
        if not isinstance(abort, bool):
            raise _FieldError((*where, "abort_on_fail"), ConfigError("abort_on_fail must be true or false"))
        try:
            out.append(Threshold.parse(d["expr"], abort_on_fail=abort))
        except ConfigError as exc:
            raise _FieldError((*where, "expr"), exc) from None
    if not out:
        raise _FieldError(
            (), ConfigError('no thresholds: add thresholds = ["error_rate < 1%"] or [[threshold]] tables')
        )
    return out


def thresholds_from_toml(path: str | Path) -> list[Threshold]:
    """Load a list of Thresholds from a TOML file (see the module docstring for the layout)."""
    p, text, data = read_toml(path, "thresholds")
    checks: list[Threshold] = _build(p, text, lambda: thresholds_from_dict(data))
    return checks
