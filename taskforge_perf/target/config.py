"""Configuration of the reference target: ``TargetConfig`` and the small spec syntax of its knobs.

Spec syntax (the same strings work in ``TargetConfig`` and on the command line):

Durations
    A number with a unit: ``20ms``, ``0.5s``, ``250us``. A bare number is refused (say the unit).

Delays (``latency``, ``task_durations``)
    ``20ms``                 fixed
    ``exp:20ms``             exponential with mean 20 ms
    ``uniform:5ms:15ms``     uniform between 5 and 15 ms
    ``normal:20ms:5ms``      normal with mean 20 ms and standard deviation 5 ms, clipped at 0

Per-endpoint maps (``latency``, ``error_rate``)
    ``"POST /tasks=exp:20ms"``, ``"GET /health=0.1"``; several entries separated by commas or
    given as repeated flags; ``*`` means every endpoint. A dict ``{"POST /tasks": "exp:20ms"}``
    also works.

Per-type maps (``task_durations``)
    ``"compress-video=uniform:300ms:900ms,resize-image=100ms"``.

Stall windows (``stalls``)
    ``"2:3"`` freezes every HTTP response for 3 s starting 2 s after the target is ready; several
    windows allowed (``"2:3,10:1"`` or repeated flags). Seconds, units optional (``"2s:500ms"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskforge_perf.target.specs import (
    Delay,
    check_key,
    entries,
    fmt_seconds,
    parse_duration,
    rate,
    stalls,
)

__all__ = ["ENDPOINTS", "OUTBOX_TYPES", "TASK_TYPES", "Delay", "TargetConfig", "parse_duration"]

ENDPOINTS: tuple[str, ...] = (
    "POST /auth/signup",
    "POST /auth/login",
    "POST /auth/refresh",
    "POST /auth/logout",
    "POST /auth/remove-test-users",
    "POST /tasks",
    "GET /health",
    "GET /health/live",
    "GET /health/ready",
    "GET /metrics",
)
TASK_TYPES: tuple[str, ...] = (
    "generate-pdf",
    "resize-image",
    "scrape-website",
    "screenshot-website",
    "compress-video",
    "generate-report",
    "etl-data",
)
#: Types the real system's outbox dispatches; the others stay queued forever with ``real_quirks``.
OUTBOX_TYPES: tuple[str, ...] = ("resize-image", "compress-video", "generate-pdf")
PROFILES: tuple[str, ...] = ("baseline", "candidate")


@dataclass(frozen=True, kw_only=True)
class TargetConfig:
    """Every knob of the reference target (times in seconds unless a spec string says otherwise).

    Network: ``host`` and ``port`` (HTTP API) / ``ws_port`` (status gateway); 0 picks a free port.

    Auth: ``access_ttl`` (900 s), ``refresh_ttl`` (7 days), ``hash_iterations`` (PBKDF2-SHA256
    rounds per password hash, run in a thread pool; 5,000 costs a few ms here, ~150,000 approaches
    the real system's 60-90 ms bcrypt).

    Faults: ``latency`` (per-endpoint delay specs, see the module docstring), ``error_rate``
    (per-endpoint fraction answered 500), ``stalls`` ((start, duration) windows during which every
    HTTP response freezes), ``drop_rate`` (fraction of HTTP requests answered by aborting the TCP
    connection), ``ws_drop_every`` (every N s all open sockets are aborted, 0 = off) and
    ``ws_drop_rate`` (each second each open socket is aborted with this probability).

    Capacity: ``max_concurrency`` requests are served at once, each holding a slot for
    ``service_time`` s (GET /metrics is exempt), so the target saturates at about
    ``max_concurrency / service_time`` requests per second and queues beyond that. 0 = unlimited.

    Profile: ``profile="candidate"`` regresses POST /tasks: every request gets an extra
    ``0.3 * candidate_base`` (6 ms by default) and any configured POST /tasks latency is scaled
    by 1.3 — a 30% regression of a 20 ms base, for the compare workflow to find.

    Gateway: ``leak`` (True like the real system: updates reach every subscribed user; False: only
    the task's owner), ``ping_interval`` (30 s; sockets that do not answer are dropped),
    ``token_check_delay`` (the async token check before the message handler is attached, only with
    ``real_quirks``: a subscribe sent earlier is lost; 2 ms, the real gateway's 0-2 ms),
    ``ws_garbage_every`` (every N s each open socket receives one frame that is not JSON and one
    JSON object of an unknown shape, to prove clients cope; 0 = off).

    Workers: ``task_durations`` (per-type delay specs; each worker sends the real worker's
    messages, see ``workers``), ``worker_concurrency`` per type (None = 1 with ``real_quirks``,
    the real system's one consumer with prefetch 1; else 4), ``task_failure_rate``,
    ``outbox_interval`` (None = 5 s with ``real_quirks``, else immediate dispatch),
    ``outbox_first_delay`` (None = 60 s with ``real_quirks`` and no ``outbox_interval``, else one
    interval), ``outbox_batch`` (20 per type per poll) and ``outbox_time_scale`` (multiplies every
    outbox timing, e.g. 0.05 turns 60 s / 5 s / 10 s / 15 s into 3 s / 0.25 s / 0.5 s / 0.75 s;
    with ``real_quirks`` the interval doubles / triples while a queue's backlog exceeds 50 / 100
    per consumer).

    ``real_quirks`` reproduces every quirk of DESIGN.md section 4; ``real_timing`` (implies
    ``real_quirks``) also reproduces the real system's latencies and capacity on a 2-core machine:
    one serial 2 ms service slot per request, 1.2% slower per open WebSocket (about 500 req/s alone,
    about 310 with 50 sockets), exponential latencies on top (p95 near 86 ms at 450 req/s) and
    120-145 ms of bcrypt-like cost on signup and login. ``seed`` seeds all randomness.

    >>> TargetConfig(latency="POST /tasks=exp:20ms", error_rate={"GET /health": 0.1}).latency
    (('POST /tasks', Delay('exp:20ms')),)
    """

    host: str = "127.0.0.1"
    port: int = 0
    ws_port: int = 0
    access_ttl: float = 900.0
    refresh_ttl: float = 7 * 24 * 3600.0
    hash_iterations: int = 5_000
    latency: Any = ()
    error_rate: Any = ()
    stalls: Any = ()
    drop_rate: float = 0.0
    ws_drop_every: float = 0.0
    ws_drop_rate: float = 0.0
    ws_garbage_every: float = 0.0
    max_concurrency: int = 0
    service_time: float = 0.0
    profile: str = "baseline"
    candidate_base: float = 0.020
    leak: bool = True
    ping_interval: float = 30.0
    token_check_delay: float = 0.002
    task_durations: Any = ()
    worker_concurrency: int | None = None
    task_failure_rate: float = 0.0
    outbox_interval: float | None = None
    outbox_first_delay: float | None = None
    outbox_batch: int = 20
    outbox_time_scale: float = 1.0
    real_quirks: bool = False
    real_timing: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        if not isinstance(self.host, str) or not self.host:
            raise ValueError("host: give a host name or address such as '127.0.0.1'")
        for name in ("port", "ws_port"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 65535:
                raise ValueError(f"{name}: {v!r} is not a port; use 0..65535 (0 picks a free port)")
        for name in ("access_ttl", "refresh_ttl", "ping_interval"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not v > 0:
                raise ValueError(f"{name}: {v!r} must be a positive number of seconds")
        for name in (
            "ws_drop_every",
            "ws_garbage_every",
            "service_time",
            "token_check_delay",
            "candidate_base",
        ):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not v >= 0:
                raise ValueError(f"{name}: {v!r} must be >= 0 seconds")
        for name in ("hash_iterations", "worker_concurrency", "outbox_batch"):
            v = getattr(self, name)
            if (v is not None or name != "worker_concurrency") and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name}: {v!r} must be an integer >= 1")
        if self.real_timing:
            s(self, "real_quirks", True)
        t = self.outbox_time_scale
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < float("inf"):
            raise ValueError(f"outbox_time_scale: {t!r} must be a number > 0 (0.05 = 20 times faster)")
        if self.outbox_first_delay is not None and not self.outbox_first_delay >= 0:
            raise ValueError("outbox_first_delay: must be >= 0 seconds or None")
        if not isinstance(self.max_concurrency, int) or self.max_concurrency < 0:
            raise ValueError(
                f"max_concurrency: {self.max_concurrency!r} must be an integer >= 0 (0 = unlimited)"
            )
        if self.max_concurrency and not self.service_time:
            raise ValueError("service_time: set it (> 0 s) when max_concurrency is set")
        for name in ("drop_rate", "ws_drop_rate", "task_failure_rate"):
            s(self, name, rate(getattr(self, name), name))
        if self.profile not in PROFILES:
            raise ValueError(f"profile: {self.profile!r} is unknown; use one of {PROFILES}")
        if self.outbox_interval is not None and not self.outbox_interval >= 0:
            raise ValueError("outbox_interval: must be >= 0 seconds (0 = dispatch at once) or None")
        if self.seed is not None and not isinstance(self.seed, int):
            raise ValueError(f"seed: {self.seed!r} must be an integer or None")
        try:
            lat = tuple(
                (check_key(k, ENDPOINTS, "latency"), Delay.parse(v, what="latency"))
                for k, v in entries(self.latency)
            )
        except ValueError as e:
            raise ValueError(f"latency: {e}" if not str(e).startswith("latency") else str(e)) from None
        s(self, "latency", lat)
        try:
            err = tuple(
                (check_key(k, ENDPOINTS, "error_rate"), rate(v, "error_rate"))
                for k, v in entries(self.error_rate)
            )
        except ValueError as e:
            msg = str(e)
            raise ValueError(msg if msg.startswith("error_rate") else f"error_rate: {msg}") from None
        s(self, "error_rate", err)
        s(self, "stalls", stalls(self.stalls))
        try:
            dur = tuple(
                (check_key(k, TASK_TYPES, "task_durations"), Delay.parse(v, what="task_durations"))
                for k, v in entries(self.task_durations)
            )
        except ValueError as e:
            msg = str(e)
            raise ValueError(msg if msg.startswith("task_durations") else f"task_durations: {msg}") from None
        s(self, "task_durations", dur)

    # --- derived views -------------------------------------------------------------------------

    def latency_for(self, endpoint: str) -> Delay | None:
        """The delay of ``endpoint`` with the profile applied (None = no added latency)."""
        found = None
        for k, d in self.latency:
            if k == endpoint or (k == "*" and found is None):
                found = d
        if endpoint == "POST /tasks" and self.profile == "candidate":
            extra = 0.3 * self.candidate_base
            if found is None:
                return Delay("fixed", extra)
            scaled = found.scaled(1.3)
            return Delay(scaled.kind, scaled.a + extra, scaled.b + (extra if scaled.b else 0.0))
        return found

    def error_rate_for(self, endpoint: str) -> float:
        rate = 0.0
        for k, r in self.error_rate:
            if k == endpoint:
                return r
            if k == "*":
                rate = r
        return rate

    def duration_for(self, task_type: str) -> Delay:
        found = None
        for k, d in self.task_durations:
            if k == task_type or (k == "*" and found is None):
                found = d
        return found or Delay("fixed", _DEFAULT_DURATIONS[task_type])

    @property
    def effective_outbox_interval(self) -> float:
        """Seconds between outbox passes (0 = dispatch at once), ``outbox_time_scale`` applied."""
        if self.outbox_interval is not None:
            return self.outbox_interval * self.outbox_time_scale
        return 5.0 * self.outbox_time_scale if self.real_quirks else 0.0

    @property
    def effective_outbox_first_delay(self) -> float:
        """Seconds from start to the first outbox pass (the real outbox-publisher waits 60 s)."""
        if self.outbox_first_delay is not None:
            return self.outbox_first_delay * self.outbox_time_scale
        if self.real_quirks and self.outbox_interval is None:
            return 60.0 * self.outbox_time_scale
        return self.effective_outbox_interval

    @property
    def effective_worker_concurrency(self) -> int:
        if self.worker_concurrency is not None:
            return self.worker_concurrency
        return 1 if self.real_quirks else 4

    def to_argv(self) -> list[str]:
        """Command-line flags of ``python -m taskforge_perf target`` that rebuild this config."""
        d = TargetConfig()
        argv: list[str] = []

        def opt(flag: str, value: Any, default: Any) -> None:
            if value != default:
                argv.extend([flag, str(value)])

        opt("--host", self.host, d.host)
        argv += ["--port", str(self.port), "--ws-port", str(self.ws_port)]
        opt("--access-ttl", repr(float(self.access_ttl)), repr(d.access_ttl))
        opt("--refresh-ttl", repr(float(self.refresh_ttl)), repr(d.refresh_ttl))
        opt("--hash-iterations", self.hash_iterations, d.hash_iterations)
        for k, dl in self.latency:
            argv += ["--latency", f"{k}={dl}"]
        for k, r in self.error_rate:
            argv += ["--error-rate", f"{k}={r!r}"]
        for a, b in self.stalls:
            argv += ["--stall", f"{a!r}:{b!r}"]
        opt("--drop-rate", repr(self.drop_rate), repr(d.drop_rate))
        opt("--ws-drop-every", repr(float(self.ws_drop_every)), repr(d.ws_drop_every))
        opt("--ws-drop-rate", repr(self.ws_drop_rate), repr(d.ws_drop_rate))
        opt("--ws-garbage-every", repr(float(self.ws_garbage_every)), repr(d.ws_garbage_every))
        opt("--max-concurrency", self.max_concurrency, d.max_concurrency)
        opt("--service-time", fmt_seconds(self.service_time), fmt_seconds(d.service_time))
        opt("--profile", self.profile, d.profile)
        opt("--candidate-base", fmt_seconds(self.candidate_base), fmt_seconds(d.candidate_base))
        if not self.leak:
            argv.append("--no-leak")
        opt("--ping-interval", repr(float(self.ping_interval)), repr(d.ping_interval))
        opt(
            "--token-check-delay",
            fmt_seconds(self.token_check_delay),
            fmt_seconds(d.token_check_delay),
        )
        for k, dl in self.task_durations:
            argv += ["--task-duration", f"{k}={dl}"]
        opt("--worker-concurrency", self.worker_concurrency, d.worker_concurrency)
        opt("--task-failure-rate", repr(self.task_failure_rate), repr(d.task_failure_rate))
        if self.outbox_interval is not None:
            argv += ["--outbox-interval", repr(float(self.outbox_interval))]
        if self.outbox_first_delay is not None:
            argv += ["--outbox-first-delay", repr(float(self.outbox_first_delay))]
        opt("--outbox-batch", self.outbox_batch, d.outbox_batch)
        opt("--outbox-time-scale", repr(float(self.outbox_time_scale)), repr(d.outbox_time_scale))
        if self.real_timing:
            argv.append("--real-timing")
        elif self.real_quirks:
            argv.append("--real-quirks")
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        return argv


_DEFAULT_DURATIONS: dict[str, float] = {
    "generate-pdf": 0.300,
    "resize-image": 0.200,
    "scrape-website": 0.300,
    "screenshot-website": 0.300,
    "compress-video": 0.500,
    "generate-report": 0.400,
    "etl-data": 0.500,
}
