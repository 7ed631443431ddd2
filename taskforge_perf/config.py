"""Where the load goes: the ``Target`` value object and its validation."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any
from urllib.parse import urlsplit

from taskforge_perf.errors import ConfigError


def _check_url(field: str, url: Any, schemes: tuple[str, ...], example: str) -> str:
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{field} must be a URL string such as {example!r} (got {url!r})")
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{field} must start with {' or '.join(s + '://' for s in schemes)} "
            f"(got {url!r}); for example {example!r}"
        )
    if not parts.hostname:
        raise ConfigError(f"{field} has no host (got {url!r}); for example {example!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"{field} has an invalid port (got {url!r}); use 1..65535") from None
    return url.rstrip("/")


def _check_positive(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{field} must be a number of seconds > 0 (got {value!r})")
    return float(value)


@dataclass(frozen=True)
class Target:
    """The system under test: its HTTP API and (optionally) its status gateway.

    >>> Target("http://127.0.0.1:3000", "ws://127.0.0.1:4000")
    Target(base_url='http://127.0.0.1:3000', ws_url='ws://127.0.0.1:4000', ...)
    """

    base_url: str
    ws_url: str | None = None
    _: KW_ONLY
    request_timeout: float = 10.0
    connect_timeout: float = 5.0
    ws_connect_timeout: float = 10.0
    version: str | None = None

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

    def __repr__(self) -> str:
        return (
            f"Target(base_url={self.base_url!r}, ws_url={self.ws_url!r}, "
            f"request_timeout={self.request_timeout}, connect_timeout={self.connect_timeout})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description for run metadata (URLs carry no credentials here)."""
        return {
            "base_url": self.base_url,
            "ws_url": self.ws_url,
            "request_timeout": self.request_timeout,
            "connect_timeout": self.connect_timeout,
            "ws_connect_timeout": self.ws_connect_timeout,
            "version": self.version,
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
