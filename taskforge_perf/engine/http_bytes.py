"""The bytes of HTTP/1.1 on the fast path: request templates, and what is read from a response
head or body without a parser object (redirect Location, Retry-After, a task id)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

#: Methods whose request carries a Content-Length even without a body (as aiohttp sends them).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Header names the template owns; an endpoint that sets one of these goes through aiohttp.
_OWNED = frozenset({"host", "content-length", "transfer-encoding", "connection", "expect"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class RequestTemplate:
    """The bytes of one endpoint's request, with holes for the token and the body.

    >>> t = RequestTemplate("GET", "/health", "127.0.0.1:8080", {}, auth=False)
    >>> t.build(None, None)
    b'GET /health HTTP/1.1\\r\\nHost: 127.0.0.1:8080\\r\\n\\r\\n'
    """

    __slots__ = ("bare", "tok", "body", "tok_body")

    def __init__(
        self, method: str, target: str, host: str, headers: Mapping[str, str], *, auth: bool
    ) -> None:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
        for k, v in headers.items():
            if auth and k.lower() == "authorization":
                continue  # replaced by the user's token, as on the aiohttp path
            lines.append(f"{k}: {v}")
        # '%' is the splice operator below: escape it in the fixed part (percent-encoded paths).
        head = ("\r\n".join(lines) + "\r\n").encode("latin-1").replace(b"%", b"%%")
        cl0 = b"Content-Length: 0\r\n" if method in _BODY_METHODS else b""
        self.bare: bytes = (head + cl0 + b"\r\n").replace(b"%%", b"%")
        self.tok: bytes = head + b"Authorization: Bearer %s\r\n" + cl0 + b"\r\n"
        self.body: bytes = head + b"Content-Length: %d\r\n\r\n%s"
        self.tok_body: bytes = head + b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"

    def build(self, token: str | None, body: bytes | None) -> bytes:
        """The request's bytes (one ``%`` formatting: a single allocation)."""
        if body is None:
            if token is None:
                return self.bare
            return self.tok % token.encode()
        if token is None:
            return self.body % (len(body), body)
        return self.tok_body % (token.encode(), len(body), body)


def template_for(
    method: str, path: str, headers: Mapping[str, str], base: Origin, *, auth: bool
) -> RequestTemplate | None:
    """A template for an endpoint, or None when it needs aiohttp (HEAD, odd headers or path)."""
    if method == "HEAD":
        return None  # a HEAD response has no body whatever its Content-Length says
    target = base.path_prefix + path
    if not target.isascii() or any(c in target for c in " \r\n\t"):
        return None
    for k, v in headers.items():
        if k.lower() in _OWNED or any(c in k + v for c in "\r\n"):
            return None
        try:
            (k + v).encode("latin-1")
        except UnicodeEncodeError:
            return None
    return RequestTemplate(method, target, base.host_header, headers, auth=auth)


class Origin:
    """Scheme, host and port of a base URL, as the fast client connects to it."""

    __slots__ = ("scheme", "host", "port", "host_header", "path_prefix")

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.scheme = parts.scheme
        host = parts.hostname or ""
        default = 443 if self.scheme == "https" else 80
        self.port = parts.port or default
        self.host = host
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if self.port == default else f"{shown}:{self.port}"
        self.path_prefix = parts.path.rstrip("/")


def header_value(head: bytes, name: bytes) -> bytes | None:
    """A header's value (``name`` in lower case) from a response's first chunk, or None."""
    end = head.find(b"\r\n\r\n")
    lines = (head[:end] if end >= 0 else head).split(b"\r\n")[1:]
    for line in lines:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def redirect_location(status: int, head: bytes) -> str | None:
    """The Location of a redirect response from its first chunk (None if not a redirect)."""
    if status not in REDIRECTS:
        return None
    value = header_value(head, b"location")
    return value.decode("latin-1") if value is not None else None


def task_id(raw: bytes) -> str | None:
    """The ``taskId`` of a task-creation answer: a bytes search, json.loads when unsure."""
    i = raw.find(b'"taskId":"')
    if i >= 0:
        j = raw.find(b'"', i + 10)
        if j > i + 10 and raw.find(b"\\", i + 10, j) < 0:
            s = raw.strip()
            if s[:1] == b"{" and s[-1:] == b"}" and raw.count(b'"taskId"') == 1:
                return raw[i + 10 : j].decode("utf-8", "replace")
    try:
        tid: Any = json.loads(raw).get("taskId")
    except (ValueError, AttributeError):
        return None
    return tid if isinstance(tid, str) and tid else None
