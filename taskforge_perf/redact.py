"""Keep secrets out of everything shown or saved: URLs, texts, metadata and log records.

One set of rules, used everywhere (``Target`` repr and metadata, saved runs, reports, CLI output,
error messages, and the log records of the tester and its libraries):

- the user-info of a URL (``http://user:pass@host``) becomes ``***@``;
- JWTs (``eyJ...``), ``token=``/``refreshToken=`` query values, ``Bearer``/``Basic`` credentials
  and ``"accessToken"``/``"refreshToken"``/``"password"`` fields become ``***``;
- literal secrets given to :func:`log_redaction` (the users' passwords) become ``***``.

>>> redact_url("http://alice:hunter2@127.0.0.1:3000/api")
'http://***@127.0.0.1:3000/api'
>>> redact_text("GET /?token=eyJhbGciOi.eyJpZCI6MX0.c2ln HTTP/1.1")
'GET /?token=*** HTTP/1.1'

Nothing happens at import: the log filter is attached while a run is going
(``with log_redaction(...)``, which ``LoadTester.run`` does) and removed afterwards.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "LOGGERS",
    "MASK",
    "RedactingFilter",
    "log_redaction",
    "redact",
    "redact_text",
    "redact_url",
]

MASK = "***"

#: The loggers a run writes to: its own and those of the libraries it drives. websockets logs
#: every handshake request (``GET /?token=<access JWT>``) at DEBUG on ``websockets.client``.
LOGGERS: tuple[str, ...] = (
    "taskforge_perf",
    "websockets",
    "websockets.client",
    "websockets.protocol",
    "aiohttp",
    "aiohttp.client",
    "aiohttp.internal",
    "aiohttp.websocket",
    "asyncio",
)

# scheme://user[:password]@ -> scheme://***@ (user-info ends at the first '@' before the host).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#@\s'\"]+)@")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_QUERY = re.compile(
    r"(?P<key>[?&](?:access_?token|refresh_?token|token|password|passwd|pwd|secret|api_?key)=)"
    r"(?P<val>[^&#\s'\"]+)",
    re.IGNORECASE,
)
# An Authorization header's credentials; a bare "Bearer X" only when X looks like a token (not prose).
_AUTH_HEADER = re.compile(
    r"(?P<key>\bAuthorization['\"]?\s*[:=,]\s*['\"]?(?:Bearer|Basic|Token)?\s*)(?P<val>[A-Za-z0-9._~+/=*-]+)"
    r"|(?P<key2>\bBearer\s+)(?P<val2>[A-Za-z0-9._~+/=-]{16,})",
    re.IGNORECASE,
)
_FIELD = re.compile(
    r"(?P<key>[\"']?(?:access_?token|refresh_?token|password|passwd)[\"']?\s*[:=]\s*)"
    r"(?P<q>[\"']?)(?P<val>[^\"'\s,}&]+)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """The URL with its user-info and token query values masked (everything else kept)."""
    return redact_text(url)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL credentials, tokens, auth headers, password fields and the literal
    ``secrets`` masked."""
    if not text:
        return text
    for s in secrets:
        if s and s in text:
            text = text.replace(s, MASK)
    text = _USERINFO.sub(lambda m: m["scheme"] + MASK + "@", text)
    text = _JWT.sub(MASK, text)
    text = _QUERY.sub(lambda m: m["key"] + MASK, text)
    text = _AUTH_HEADER.sub(lambda m: (m["key"] or m["key2"]) + MASK, text)
    text = _FIELD.sub(lambda m: m["key"] + m["q"] + MASK, text)
    return text


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with every string redacted."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v, secrets) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """A ``logging.Filter`` that rewrites each record's message (and traceback) redacted.

    Attached to a logger it sees the records logged on that logger; the rewritten record is what
    every handler then gets (also the handlers of parent loggers the record propagates to).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Literal secrets shorter than 4 characters would mask ordinary words of every message.
        self.secrets = tuple(sorted({s for s in secrets if isinstance(s, str) and len(s) >= 4}, key=len))[
            ::-1
        ]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is the handler's to report
            return True
        clean = redact_text(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, self.secrets)
        return True


def _loggers(names: Iterable[str]) -> list[logging.Logger]:
    """The named loggers and every existing logger below them (filters do not inherit)."""
    prefixes = tuple(names)
    found = {name: logging.getLogger(name) for name in prefixes}
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(tuple(p + "." for p in prefixes)):
            logger = logging.Logger.manager.loggerDict[name]
            if isinstance(logger, logging.Logger):
                found[name] = logger
    return list(found.values())


@contextmanager
def log_redaction(secrets: Iterable[str] = (), loggers: Iterable[str] = LOGGERS) -> Iterator[RedactingFilter]:
    """Attach a :class:`RedactingFilter` to ``loggers`` (and their existing children) for the
    duration of the block; ``secrets`` are literal strings (passwords) masked as well."""
    filt = RedactingFilter(secrets)
    attached = _loggers(loggers)
    for logger in attached:
        logger.addFilter(filt)
    try:
        yield filt
    finally:
        for logger in attached:
            logger.removeFilter(filt)
