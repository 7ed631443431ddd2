"""Where the load goes: the ``Target`` value object and its validation."""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from typing import Any
from urllib.parse import urlsplit

from taskforge_perf.errors import ConfigError
from taskforge_perf.redact import redact_url


def _check_url(field: str, url: Any, schemes: tuple[str, ...], example: str) -> str:
    if not isinstance(url, str) or not url.strip():
        shown = redact_url(url) if isinstance(url, str) else url
        raise ConfigError(f"{field} must be a URL string such as {example!r} (got {shown!r})")
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "http://[::1": an unclosed IPv6 bracket
        raise ConfigError(
            f"{field} is not a valid URL (got {shown!r}: {exc}); for example {example!r}, "
            "or 'http://[::1]:3000' for an IPv6 address"
        ) from None
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{field} must start with {' or '.join(s + '://' for s in schemes)} "
            f"(got {shown!r}); for example {example!r}"
        )
    if not parts.hostname:
        raise ConfigError(f"{field} has no host (got {shown!r}); for example {example!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"{field} has an invalid port (got {shown!r}); use 1..65535") from None
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        # Paths are appended to the base URL: '...?x=1#frag' + '/health' is no URL of the target.
        raise ConfigError(
            f"{field} must not have a query or a fragment (got {shown!r}); endpoint paths are "
            f"appended to it: drop everything from '?' or '#', e.g. {example!r}"
        )
    if parts.username is not None or parts.password is not None:
        if field == "Target.base_url":
            raise ConfigError(
                f"{field} carries credentials (got {shown!r}): TaskForge authenticates with Bearer "
                "tokens in the Authorization header, which Basic credentials from the URL would clash "
                "with (every authenticated request fails); remove 'user:password@' from the URL"
            )
    return url.strip().rstrip("/")


def _check_positive(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(
            f"{field} must be a finite number of seconds > 0 (got {value!r}); e.g. 10 (use a large "
            "value such as 3600 for a very long timeout)"
        )
    return float(value)


@dataclass(frozen=True)
class Target:
    """The system under test: its HTTP API and (optionally) its status gateway.

    >>> Target("http://127.0.0.1:3000", "ws://127.0.0.1:4000")
    Target(base_url='http://127.0.0.1:3000', ws_url='ws://127.0.0.1:4000', ...)

    A base URL may have a path (``http://host/api``) but no query or fragment (paths are appended
    to it). Timeouts are finite seconds > 0. User-info in ``ws_url`` (``ws://user:pass@host``,
    sent as Basic auth on the upgrade) is masked in ``repr``, metadata, reports and messages
    (``display_base_url`` / ``display_ws_url``); in ``base_url`` it is refused, since Basic
    credentials would clash with TaskForge's Bearer tokens. ``metrics_url`` (default: the API's
    ``/metrics``; None: off) is the target's Prometheus endpoint, scraped every monitor interval
    into ``run.target_metrics``.
    """

    base_url: str
    ws_url: str | None = None
    _: KW_ONLY
    request_timeout: float = 10.0
    connect_timeout: float = 5.0
    ws_connect_timeout: float = 10.0
    version: str | None = None
    #: The target's Prometheus metrics, scraped every monitor interval into ``run.target_metrics``;
    #: "auto" = ``base_url + "/metrics"``; None = not scraped.
    metrics_url: str | None = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "base_url",
            _check_url("Target.base_url", self.base_url, ("http", "https"), "http://127.0.0.1:3000"),
        )
        if self.ws_url is not None:
            object.__setattr__(
                self,
                "ws_url",
                _check_url("Target.ws_url", self.ws_url, ("ws", "wss"), "ws://127.0.0.1:4000"),
            )
        for name in ("request_timeout", "connect_timeout", "ws_connect_timeout"):
            object.__setattr__(self, name, _check_positive(f"Target.{name}", getattr(self, name)))
        if self.metrics_url == "auto":
            object.__setattr__(self, "metrics_url", self.base_url + "/metrics")
        elif self.metrics_url is not None:
            url = _check_url(
                "Target.metrics_url", self.metrics_url, ("http", "https"), "http://h:3000/metrics"
            )
            object.__setattr__(self, "metrics_url", url)
        if self.version is not None and not isinstance(self.version, str):
            raise ConfigError(f"Target.version must be a string or None (got {self.version!r})")

    def __repr__(self) -> str:
        ws = None if self.ws_url is None else redact_url(self.ws_url)
        return (
            f"Target(base_url={redact_url(self.base_url)!r}, ws_url={ws!r}, "
            f"request_timeout={self.request_timeout}, connect_timeout={self.connect_timeout})"
        )

    @property
    def display_base_url(self) -> str:
        """``base_url`` safe to show or save (credentials masked)."""
        return redact_url(self.base_url)

    @property
    def display_ws_url(self) -> str | None:
        """``ws_url`` safe to show or save (credentials masked), or None."""
        return None if self.ws_url is None else redact_url(self.ws_url)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description for run metadata (URL credentials masked)."""
        return {
            "base_url": redact_url(self.base_url),
            "ws_url": None if self.ws_url is None else redact_url(self.ws_url),
            "request_timeout": self.request_timeout,
            "connect_timeout": self.connect_timeout,
            "ws_connect_timeout": self.ws_connect_timeout,
            "version": self.version,
            "metrics_url": None if self.metrics_url is None else redact_url(self.metrics_url),
        }


def as_target(target: Any) -> Target:
    """Accept a Target, a base URL string, or anything with ``base_url``/``ws_url`` (ReferenceTarget)."""
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        return Target(target)
    base = getattr(target, "base_url", None)
    if base is not None:
        return Target(base, getattr(target, "ws_url", None), version=getattr(target, "version", None))
    raise ConfigError(
        f"target must be a Target, a base URL string or a ReferenceTarget (got {type(target).__name__})"
    )
