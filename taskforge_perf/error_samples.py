"""What the target said: the first few failing requests of each (endpoint, status, error kind).

Rows record an error kind and a status, never a body. A reader of a report also needs the
target's own words (``{"success": false, "error": {"message": "Unsupported task type"}}``, or
"connection refused" for a transport failure), so the HTTP driver keeps, on its error path only,
the first ``PER_KEY`` samples of each (endpoint, status, error kind), for at most ``MAX_KEYS``
keys per run (``ErrorSamples``): the body's text (UTF-8; undecodable bytes and control
characters escaped as ``\\xNN``), redacted (``taskforge_perf.redact``: tokens, passwords) and cut
at ``MAX_TEXT`` characters, or for a transport failure (status 0) the exception's text or, when
the client has none, the kind in words (``KIND_WORDS``).

They travel as ``run.meta["error_samples"]`` (a JSON-safe list of dicts, earliest first; shards
merged by ``merge_samples``) and read as a frame with ``samples_frame`` (``Run.error_samples()``).

>>> s = ErrorSamples()
>>> s.add("POST /tasks", "POST", 400, "http_4xx", 5, b'{"success":false,"error":"bad type"}', None)
>>> s.to_list()[0]["message"]
'{"success":false,"error":"bad type"}'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import polars as pl

from taskforge_perf.redact import redact_text
from taskforge_perf.users import User

__all__ = [
    "KIND_WORDS",
    "MAX_KEYS",
    "MAX_TEXT",
    "PER_KEY",
    "ErrorSamples",
    "body_text",
    "merge_samples",
    "samples_frame",
]

#: Samples kept per (endpoint, status, error kind), and keys kept per run.
PER_KEY = 3
MAX_KEYS = 50
#: Characters of text kept per sample (after redaction).
MAX_TEXT = 500
# Bytes of a body decoded before redaction and truncation: a secret cut by the 500-character limit
# must have been masked first, so decode well past it (4 bytes per character at most).
_SCAN_BYTES = 4 * MAX_TEXT + 2048
#: A transport failure's kind in words, when the client kept no exception text.
KIND_WORDS: dict[str, str] = {
    "refused": "connection refused by the target",
    "reset": "the connection was closed or reset before a complete answer",
    "timeout": "no complete answer within the request timeout",
    "dns": "the target's host name did not resolve",
    "tls": "the TLS handshake or certificate check failed",
    "protocol": "the answer broke HTTP framing (or its body was over the size limit)",
    "cancelled": "the request was cancelled (the run stopped)",
    "other": "transport failure",
}
# C0 controls (but tab, LF, CR) and DEL: shown escaped, as undecodable bytes are.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_COLUMNS: dict[str, pl.DataType] = {
    "t_start": pl.Int64(),
    "worker": pl.Int64(),
    "endpoint": pl.String(),
    "method": pl.String(),
    "status": pl.Int64(),
    "error": pl.String(),
    "source": pl.String(),
    "message": pl.String(),
    "truncated": pl.Boolean(),
}


def body_text(raw: bytes, secrets: Iterable[str] = ()) -> tuple[str, bool]:
    """(text, truncated): ``raw`` decoded as UTF-8 with binary garbage escaped, redacted, cut at
    ``MAX_TEXT`` characters.

    >>> body_text(b"bad \\xff\\x00 byte")
    ('bad \\\\xff\\\\x00 byte', False)
    """
    text = raw[:_SCAN_BYTES].decode("utf-8", "backslashreplace")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)
    text = redact_text(text, secrets)
    cut = len(text) > MAX_TEXT or len(raw) > _SCAN_BYTES
    return (text[:MAX_TEXT], cut)


class ErrorSamples:
    """The first ``PER_KEY`` samples of each (endpoint, status, error kind) of one process.

    ``add`` is called for failed requests only (the success path never reaches it); once a key
    has its samples, or ``MAX_KEYS`` keys exist, it costs a tuple and a dict lookup.
    """

    __slots__ = ("_keys", "skipped", "worker")

    def __init__(self, worker: int = 0) -> None:
        self.worker = worker
        self._keys: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
        #: Failed requests whose key came after ``MAX_KEYS`` others (not sampled).
        self.skipped = 0

    def add(
        self,
        endpoint: str,
        method: str,
        status: int,
        error: str,
        t_start: int,
        raw: bytes,
        detail: str | None,
        user: User | None = None,
    ) -> None:
        """Keep a sample of a failed request unless its key has ``PER_KEY`` already.

        ``raw``: the answer's body; ``detail``: a transport failure's text (status 0; None: the
        kind in words); ``user``: whose tokens and password are masked (besides every JWT,
        Bearer credential and password field, ``redact_text``).
        """
        key = (endpoint, status, error)
        got = self._keys.get(key)
        if got is None:
            if len(self._keys) >= MAX_KEYS:
                self.skipped += 1
                return
            got = self._keys[key] = []
        elif len(got) >= PER_KEY:
            return
        secrets = (user.access, user.refresh, user.password) if user is not None else ()
        masked = [s for s in secrets if s and len(s) >= 4]
        if status == 0:
            text = redact_text(detail or KIND_WORDS.get(error, error), masked)
            source, cut = "transport", len(text) > MAX_TEXT
            text = text[:MAX_TEXT]
        else:
            text, cut = body_text(raw, masked)
            source = "body"
        got.append(
            {
                "t_start": int(t_start),
                "worker": self.worker,
                "endpoint": endpoint,
                "method": method,
                "status": int(status),
                "error": error,
                "source": source,
                "message": text,
                "truncated": cut,
            }
        )

    def to_list(self) -> list[dict[str, Any]]:
        """Every sample, earliest first (JSON-safe copies)."""
        return sorted((dict(s) for got in self._keys.values() for s in got), key=lambda s: s["t_start"])


def merge_samples(lists: Iterable[list[dict[str, Any]] | None]) -> list[dict[str, Any]]:
    """The samples of several shards as one run's: earliest first, the same caps (``PER_KEY``
    per key, the ``MAX_KEYS`` keys seen first)."""
    every = sorted((s for got in lists if got for s in got), key=lambda s: s.get("t_start", 0))
    keys: dict[tuple[Any, Any, Any], int] = {}
    out = []
    for s in every:
        key = (s.get("endpoint"), s.get("status"), s.get("error"))
        n = keys.get(key)
        if n is None:
            if len(keys) >= MAX_KEYS:
                continue
            n = 0
        if n >= PER_KEY:
            continue
        keys[key] = n + 1
        out.append(s)
    return out


def samples_frame(meta: dict[str, Any]) -> pl.DataFrame:
    """``meta["error_samples"]`` as a frame (empty, same columns, for a run saved before them)."""
    rows = meta.get("error_samples") or []
    return pl.DataFrame(
        [{c: r.get(c) for c in _COLUMNS} for r in rows if isinstance(r, dict)], schema=_COLUMNS
    )
