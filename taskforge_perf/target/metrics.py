"""Cheap in-process counters of the reference target and their Prometheus text rendering.

Every hot-path update is a dict increment keyed by a string or tuple; rendering happens only when
``GET /metrics`` is asked.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable

#: Upper bounds (seconds) of the latency histogram buckets; +Inf is implied.
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Metrics:
    """Counters of one target process (owned by its server, never global)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.requests: dict[tuple[str, int | str], int] = {}
        self.hist: dict[str, list[int]] = {}
        self.hist_sum: dict[str, float] = {}
        self.tasks_created: dict[str, int] = {}
        self.tasks_finished: dict[tuple[str, str], int] = {}
        self.ws_open = 0
        self.ws_accepted = 0
        self.ws_rejected = 0
        self.ws_dropped = 0
        self.ws_messages = 0
        self.ws_frames_lost = 0  # real_quirks: frames read before the message handler attached
        self.queued: Callable[[], dict[str, int]] = dict

    def observe(self, route: str, status: int | str, seconds: float) -> None:
        key = (route, status)
        req = self.requests
        req[key] = req.get(key, 0) + 1
        h = self.hist.get(route)
        if h is None:
            h = self.hist[route] = [0] * (len(BUCKETS) + 1)
            self.hist_sum[route] = 0.0
        h[bisect_left(BUCKETS, seconds)] += 1
        self.hist_sum[route] += seconds

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def render(self) -> str:
        out: list[str] = []
        add = out.append
        add("# HELP taskforge_http_requests_total HTTP requests by route and status.")
        add("# TYPE taskforge_http_requests_total counter")
        for (route, status), n in sorted(self.requests.items(), key=lambda kv: str(kv[0])):
            add(f'taskforge_http_requests_total{{route="{route}",status="{status}"}} {n}')
        add("# HELP taskforge_http_request_duration_seconds HTTP latency inside the target.")
        add("# TYPE taskforge_http_request_duration_seconds histogram")
        for route, counts in sorted(self.hist.items()):
            cum = 0
            for le, n in zip((*map(repr, BUCKETS), "+Inf"), counts, strict=True):
                cum += n
                add(f'taskforge_http_request_duration_seconds_bucket{{route="{route}",le="{le}"}} {cum}')
            add(f'taskforge_http_request_duration_seconds_sum{{route="{route}"}} {self.hist_sum[route]!r}')
            add(f'taskforge_http_request_duration_seconds_count{{route="{route}"}} {cum}')
        add("# HELP taskforge_tasks_created_total Tasks accepted by POST /tasks, by type.")
        add("# TYPE taskforge_tasks_created_total counter")
        for t, n in sorted(self.tasks_created.items()):
            add(f'taskforge_tasks_created_total{{type="{t}"}} {n}')
        add("# HELP taskforge_tasks_finished_total Tasks finished by workers, by type and status.")
        add("# TYPE taskforge_tasks_finished_total counter")
        for (t, st), n in sorted(self.tasks_finished.items()):
            add(f'taskforge_tasks_finished_total{{type="{t}",status="{st}"}} {n}')
        add("# HELP taskforge_tasks_queued Tasks waiting (outbox + worker queue), by type.")
        add("# TYPE taskforge_tasks_queued gauge")
        for t, n in sorted(self.queued().items()):
            add(f'taskforge_tasks_queued{{type="{t}"}} {n}')
        add("# HELP taskforge_ws_connections Open WebSocket connections.")
        add("# TYPE taskforge_ws_connections gauge")
        add(f"taskforge_ws_connections {self.ws_open}")
        for name, value, help_ in (
            ("taskforge_ws_accepted_total", self.ws_accepted, "WebSockets accepted with a token."),
            ("taskforge_ws_rejected_total", self.ws_rejected, "WebSockets refused (bad token)."),
            ("taskforge_ws_dropped_total", self.ws_dropped, "WebSockets aborted by drop knobs."),
            ("taskforge_ws_messages_sent_total", self.ws_messages, "Status messages sent."),
            (
                "taskforge_ws_frames_lost_total",
                self.ws_frames_lost,
                "Client frames lost before the message handler attached (subscribe race).",
            ),
        ):
            add(f"# HELP {name} {help_}")
            add(f"# TYPE {name} counter")
            add(f"{name} {value}")
        add("# HELP taskforge_uptime_seconds Seconds since the target started.")
        add("# TYPE taskforge_uptime_seconds gauge")
        add(f"taskforge_uptime_seconds {self.uptime():.3f}")
        return "\n".join(out) + "\n"


def parse_prometheus(text: str) -> dict[str, dict[tuple[str, ...], float]]:
    """Parse Prometheus text into ``{metric: {label values in order: value}}``.

    >>> parse_prometheus('a_total{route="GET /health",status="200"} 3\\nb 1\\n')
    {'a_total': {('GET /health', '200'): 3.0}, 'b': {(): 1.0}}
    """
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if "{" in head:
            name, _, labels = head.partition("{")
            vals = tuple(part.split("=", 1)[1].strip('"') for part in _split_labels(labels.rstrip("}")))
        else:
            name, vals = head, ()
        out.setdefault(name, {})[vals] = float(value)
    return out


def _split_labels(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        parts.append("".join(cur))
    return parts
