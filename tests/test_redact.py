"""One redaction function for URLs, texts, metadata and log records."""

from __future__ import annotations

import logging
from urllib.parse import urlunsplit

import pytest

from taskforge_perf.redact import RedactingFilter, log_redaction, redact, redact_text, redact_url

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MX0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            urlunsplit(("http", "alice:hunter2@127.0.0.1:3000", "/api", "", "")),
            "http://***@127.0.0.1:3000/api",
        ),
        (urlunsplit(("wss", "tok@127.0.0.1", "/", "", "")), "wss://***@127.0.0.1/"),
        (f"GET /?token={JWT} HTTP/1.1", "GET /?token=*** HTTP/1.1"),
        ("GET /?token=opaque-123&x=1", "GET /?token=***&x=1"),
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer ***"),
        ("{'Authorization': 'Bearer abc'}", "{'Authorization': 'Bearer ***'}"),
        ('{"refreshToken": "r-1", "password": "pw"}', '{"refreshToken": "***", "password": "***"}'),
        (f"token {JWT} expired", "token *** expired"),
        # Ordinary text is left alone: e-mails, prose about tokens, paths.
        ("loadtest1@example.com logged in", "loadtest1@example.com logged in"),
        ("Bearer tokens and Basic credentials clash", "Bearer tokens and Basic credentials clash"),
        ("password must be a non-empty string", "password must be a non-empty string"),
        ("http://127.0.0.1:3000/health", "http://127.0.0.1:3000/health"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_literal_secrets_and_nested_values() -> None:
    assert redact_text("signup with s3cret-pw failed", ["s3cret-pw"]) == "signup with *** failed"
    ws_url = urlunsplit(("ws", "u:p@127.0.0.1:1", "", "", ""))  # credentials, loopback host
    meta = {"target": {"ws_url": ws_url}, "errors": [f"401 for {JWT}"], "n": 3, "ok": None}
    assert redact(meta) == {
        "target": {"ws_url": "ws://***@127.0.0.1:1"},
        "errors": ["401 for ***"],
        "n": 3,
        "ok": None,
    }
    assert redact_url("ws://127.0.0.1:1/?token=abc") == "ws://127.0.0.1:1/?token=***"


def test_filter_rewrites_messages_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("websockets.client")
    child = logging.getLogger("taskforge_perf.engine.test_child")  # exists before the run starts
    with caplog.at_level(logging.DEBUG), log_redaction(secrets=["hunter22"]) as filt:
        assert filt in log.filters and filt in child.filters
        log.debug("> GET %s HTTP/1.1", f"/?token={JWT}")
        child.info("login of %s with %s", "a@b.c", "hunter22")
        try:
            url = urlunsplit(("http", "u:hunter22@127.0.0.1", "/", f"token={JWT}", ""))
            raise ValueError(f"bad url {url}")
        except ValueError:
            log.exception("connect failed")
    text = caplog.text
    assert JWT not in text and "hunter22" not in text and "u:" not in text
    assert "/?token=*** HTTP/1.1" in text and "login of a@b.c with ***" in text
    assert "ValueError: bad url http://***@127.0.0.1/?token=***" in text
    # The filter is gone after the run: nothing stays attached to other people's loggers.
    assert not any(isinstance(f, RedactingFilter) for f in log.filters + child.filters)


def test_nothing_is_attached_at_import() -> None:
    import taskforge_perf  # noqa: F401

    for name in ("websockets", "websockets.client", "aiohttp.client", "asyncio", "taskforge_perf"):
        assert not any(isinstance(f, RedactingFilter) for f in logging.getLogger(name).filters)


def test_short_literal_secrets_are_not_masked_everywhere() -> None:
    filt = RedactingFilter(["ab", "longer-secret"])
    assert filt.secrets == ("longer-secret",)
