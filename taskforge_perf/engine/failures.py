"""The one place where aiohttp / OS exceptions become the project's error kinds."""

from __future__ import annotations

import asyncio
import email.utils
import errno
import ssl
import time
from collections.abc import Mapping
from typing import Any

import aiohttp


def classify(exc: BaseException) -> str:
    """Map a client-side exception to an error kind of ``schema.ERROR_KINDS``."""
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError | ssl.SSLError):
        return "tls"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = getattr(exc, "os_error", None)
        if isinstance(os_err, TimeoutError):
            return "timeout"
        return "refused"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "reset"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        # Truncated bodies come from a peer closing mid-response; bad framing is a protocol error.
        return "reset" if "closed" in str(exc).lower() or "not completed" in str(exc).lower() else "protocol"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, aiohttp.ClientOSError | OSError):
        code = getattr(exc, "errno", None)
        if code == errno.ECONNREFUSED:
            return "refused"
        if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            return "reset"
        if code == errno.ETIMEDOUT:
            return "timeout"
        return "other"
    if isinstance(exc, aiohttp.ClientError):
        return "protocol"
    return "other"


def status_error(status: int) -> str | None:
    """Error kind of an HTTP status: None below 400."""
    if status < 400:
        return None
    return "http_4xx" if status < 500 else "http_5xx"


def retry_after_s(value: str | bytes | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header value asks for: delay-seconds or an HTTP-date.

    None when absent or unreadable; a date in the past gives 0.0.

    >>> retry_after_s("3"), retry_after_s(b"0.5"), retry_after_s("soon")
    (3.0, 0.5, None)
    """
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    try:
        secs = float(text)  # RFC 9110 says an integer; a fraction is accepted
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
    if secs != secs or secs == float("inf"):
        return None
    return max(secs, 0.0)


def check_headers(endpoint: str, headers: Mapping[Any, Any]) -> None:
    """Raise TypeError/ValueError for headers no client can send (non-str, CR or LF): such a
    request cannot be built and becomes a "client" row."""
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(
                f"header {k!r} of endpoint {endpoint!r}: names and values must be str "
                f"(got {type(k).__name__}: {type(v).__name__})"
            )
        if any(c in k + v for c in "\r\n"):
            raise ValueError(f"header {k!r} of endpoint {endpoint!r} contains CR or LF")
