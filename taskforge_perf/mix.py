"""What the load sends: weighted endpoints and the TaskForge payload generators."""

from __future__ import annotations

import bisect
import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskforge_perf.errors import ConfigError

#: A request builder gets the user's email, a fresh access token (None for unauthenticated
#: endpoints) and the run's seeded generator; it returns the JSON body (a mapping), raw bytes, or None.
Builder = Callable[[str, "str | None", random.Random], "Mapping[str, Any] | bytes | None"]

TASK_TYPES: tuple[str, ...] = (
    "generate-pdf",
    "resize-image",
    "scrape-website",
    "screenshot-website",
    "compress-video",
    "generate-report",
    "etl-data",
)

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_PRESETS = ("fast", "medium", "slow", "veryfast", "slower")


def pdf_payload(rng: random.Random) -> dict[str, Any]:
    """A generate-pdf payload: a page URL."""
    return {"url": f"https://example.com/report/{rng.randrange(1_000_000)}"}


def video_payload(rng: random.Random) -> dict[str, Any]:
    """A compress-video payload as the seed builds it: mp4, bitrate 500k..2000k, a preset."""
    return {
        "videoUrl": f"https://example.com/videos/{rng.randrange(1_000_000)}.mov",
        "format": "mp4",
        "bitrate": f"{rng.randrange(500, 2001, 100)}k",
        "preset": rng.choice(_PRESETS),
    }


def image_payload(rng: random.Random) -> dict[str, Any]:
    """A resize-image payload: width 200..1200, height 150..900."""
    return {
        "imageUrl": f"https://example.com/images/{rng.randrange(1_000_000)}.jpg",
        "width": rng.randint(200, 1200),
        "height": rng.randint(150, 900),
    }


def generic_payload(rng: random.Random) -> dict[str, Any]:
    """A payload for the other task types: a URL to work on."""
    return {"url": f"https://example.com/data/{rng.randrange(1_000_000)}"}


PAYLOADS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "generate-pdf": pdf_payload,
    "compress-video": video_payload,
    "resize-image": image_payload,
}


# Pre-built body templates: the exact bytes ``json.dumps(build(...), separators=(",", ":"))``
# gives, drawing from the generator in the same order, without a dict or the json module per
# request (the hot path; the task types and presets need no JSON escaping).
def _pdf_bytes(prefix: bytes) -> Callable[[random.Random], bytes]:
    tmpl = prefix + b'{"url":"https://example.com/report/%d"}}'
    return lambda rng: tmpl % rng.randrange(1_000_000)


def _video_bytes(prefix: bytes) -> Callable[[random.Random], bytes]:
    tmpl = prefix + (
        b'{"videoUrl":"https://example.com/videos/%d.mov","format":"mp4","bitrate":"%dk","preset":"%s"}}'
    )
    presets = tuple(p.encode() for p in _PRESETS)
    return lambda rng: tmpl % (rng.randrange(1_000_000), rng.randrange(500, 2001, 100), rng.choice(presets))


def _image_bytes(prefix: bytes) -> Callable[[random.Random], bytes]:
    tmpl = prefix + b'{"imageUrl":"https://example.com/images/%d.jpg","width":%d,"height":%d}}'
    return lambda rng: tmpl % (rng.randrange(1_000_000), rng.randint(200, 1200), rng.randint(150, 900))


def _generic_bytes(prefix: bytes) -> Callable[[random.Random], bytes]:
    tmpl = prefix + b'{"url":"https://example.com/data/%d"}}'
    return lambda rng: tmpl % rng.randrange(1_000_000)


_PAYLOAD_BYTES: dict[str, Callable[[bytes], Callable[[random.Random], bytes]]] = {
    "generate-pdf": _pdf_bytes,
    "compress-video": _video_bytes,
    "resize-image": _image_bytes,
}


def task_builder(task_type: str) -> Builder:
    """A builder of ``POST /tasks`` bodies ``{type, payload}`` for one task type.

    The builder also carries ``encode_body(rng) -> bytes``: the same body, already encoded.
    """
    make = PAYLOADS.get(task_type, generic_payload)

    def build(user: str, token: str | None, rng: random.Random) -> dict[str, Any]:
        return {"type": task_type, "payload": make(rng)}

    prefix = json.dumps({"type": task_type}, separators=(",", ":"))[:-1].encode() + b',"payload":'
    build.encode_body = _PAYLOAD_BYTES.get(task_type, _generic_bytes)(prefix)  # type: ignore[attr-defined]
    return build


@dataclass(frozen=True)
class Endpoint:
    """One weighted request of a mix.

    ``creates_task`` marks requests whose 2xx answer carries a ``taskId`` (POST /tasks): the id is
    recorded and offered to WebSocket subscriptions.

    >>> Endpoint("GET /health", "GET", "/health", weight=10, auth=False)
    Endpoint(name='GET /health', ...)
    """

    name: str
    method: str
    path: str
    weight: float = 1.0
    build: Builder | None = None
    auth: bool = True
    creates_task: bool = False
    task_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"Endpoint {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("Endpoint.name must be a non-empty display name such as 'GET /health'")
        method = str(self.method).upper()
        if method not in _METHODS:
            raise ConfigError(f"{where}: method must be one of {', '.join(_METHODS)} (got {self.method!r})")
        object.__setattr__(self, "method", method)
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ConfigError(f"{where}: path must start with '/' (got {self.path!r})")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w < math.inf:
            raise ConfigError(
                f"{where}: weight must be a finite number >= 0 (got {w!r}); weights are relative "
                "(10 and 30 give 25% and 75%), use 0 to disable it"
            )
        for flag in ("auth", "creates_task"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{where}: {flag} must be True or False (got {getattr(self, flag)!r})")
        if self.task_type is not None and (not isinstance(self.task_type, str) or not self.task_type):
            raise ConfigError(
                f"{where}: task_type must be a non-empty string or None (got {self.task_type!r})"
            )
        # Header values are checked when a request is built (a bad one is a ``client`` row).
        if not isinstance(self.headers, Mapping):
            raise ConfigError(
                f"{where}: headers must be a mapping of header names to values (got "
                f"{type(self.headers).__name__}), e.g. {{'X-Trace': 'on'}}"
            )
        if self.build is not None and not callable(self.build):
            raise ConfigError(
                f"{where}: build must be a callable (user, token, rng) -> body (got {self.build!r})"
            )
        # A builder may carry a pre-encoded variant (``task_builder`` does): bytes, no json.
        object.__setattr__(self, "_encode", getattr(self.build, "encode_body", None))

    def __repr__(self) -> str:
        return (
            f"Endpoint(name={self.name!r}, method={self.method!r}, path={self.path!r}, weight={self.weight})"
        )

    def body(self, user: str, token: str | None, rng: random.Random) -> bytes | None:
        """The encoded request body for one request."""
        encode = self._encode  # type: ignore[attr-defined]
        if encode is not None:
            return encode(rng)  # type: ignore[no-any-return]
        if self.build is None:
            return None
        made = self.build(user, token, rng)
        if made is None or isinstance(made, bytes):
            return made
        return json.dumps(made, separators=(",", ":")).encode()


class RequestMix:
    """Weighted endpoints; ``pick(rng)`` draws one in proportion to its weight.

    >>> mix = RequestMix.taskforge()
    >>> sorted(e.name for e in mix.endpoints)[0]
    'GET /health'
    """

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        if isinstance(endpoints, Endpoint):
            endpoints = (endpoints,)
        if isinstance(endpoints, str | bytes | Mapping) or not isinstance(endpoints, Iterable):
            raise ConfigError(
                f"RequestMix takes a list of Endpoint objects (got {type(endpoints).__name__}); e.g. "
                "RequestMix([Endpoint('GET /health', 'GET', '/health')]) or RequestMix.taskforge()"
            )
        endpoints = tuple(endpoints)
        if not endpoints:
            raise ConfigError("RequestMix needs at least one Endpoint (got an empty mix)")
        for e in endpoints:
            if not isinstance(e, Endpoint):
                raise ConfigError(f"RequestMix takes Endpoint objects (got {type(e).__name__})")
        names = [e.name for e in endpoints]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"RequestMix: endpoint names must be unique (repeated: {sorted(dup)})")
        total = sum(e.weight for e in endpoints)
        if total <= 0:
            raise ConfigError("RequestMix: the weights sum to 0; give at least one endpoint a weight > 0")
        self.endpoints: tuple[Endpoint, ...] = endpoints
        self._active = tuple(e for e in endpoints if e.weight > 0)
        cum: list[float] = []
        acc = 0.0
        for e in self._active:
            acc += e.weight
            cum.append(acc / total)
        cum[-1] = 1.0
        self._cum = cum

    def pick(self, rng: random.Random) -> Endpoint:
        """Draw one endpoint in proportion to its weight."""
        return self._active[bisect.bisect_right(self._cum, rng.random())]

    def shares(self) -> dict[str, float]:
        """Expected share of each endpoint (weights normalised)."""
        total = sum(e.weight for e in self.endpoints)
        return {e.name: e.weight / total for e in self.endpoints}

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-safe description for run metadata."""
        return [
            {"name": e.name, "method": e.method, "path": e.path, "weight": e.weight} for e in self.endpoints
        ]

    def __repr__(self) -> str:
        inner = ", ".join(f"{e.name}={e.weight:g}" for e in self.endpoints)
        return f"RequestMix({inner})"

    @classmethod
    def tasks(cls, weights: Mapping[str, float]) -> RequestMix:
        """A mix of ``POST /tasks`` of the given task types and weights."""
        if not isinstance(weights, Mapping):
            raise ConfigError(
                f"RequestMix.tasks takes a mapping of task type to weight (got {type(weights).__name__}); "
                "e.g. RequestMix.tasks({'generate-pdf': 3, 'resize-image': 1})"
            )
        return cls([task_endpoint(t, w) for t, w in weights.items()])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestMix:
        """A mix from ``{"endpoints": [{"task": "generate-pdf", "weight": 30}, {"name": ...,
        "method": ..., "path": ..., "weight": ..., "auth": ..., "json": ...}]}``."""
        from taskforge_perf.toml_io import build_mix

        return build_mix(data)

    @classmethod
    def from_toml(cls, path: str | Path) -> RequestMix:
        """Load a mix from a TOML file of ``[[endpoints]]`` tables; errors name the file, the line
        and the field. See ``taskforge_perf.toml_io`` and ``examples/mix.toml``."""
        from taskforge_perf.toml_io import mix_from_toml

        return mix_from_toml(path)

    @classmethod
    def taskforge(cls) -> RequestMix:
        """The seed's default mix: health 10, PDF 30, video 25, image 35, metrics 5."""
        return cls(
            [
                Endpoint("GET /health", "GET", "/health", 10, auth=False),
                task_endpoint("generate-pdf", 30),
                task_endpoint("compress-video", 25),
                task_endpoint("resize-image", 35),
                Endpoint("GET /metrics", "GET", "/metrics", 5, auth=False),
            ]
        )


def task_endpoint(task_type: str, weight: float = 1.0) -> Endpoint:
    """``POST /tasks`` of one task type, named ``"POST /tasks <type>"``."""
    if task_type not in TASK_TYPES:
        raise ConfigError(f"task type must be one of {', '.join(TASK_TYPES)} (got {task_type!r})")
    return Endpoint(
        f"POST /tasks {task_type}",
        "POST",
        "/tasks",
        weight,
        build=task_builder(task_type),
        creates_task=True,
        task_type=task_type,
        headers={"Content-Type": "application/json"},
    )
