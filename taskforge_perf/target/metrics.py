"""Cheap in-process counters of the reference target and their Prometheus text rendering.

Every hot-path update is a dict increment keyed by a string or tuple; rendering happens only when
``GET /metrics`` is asked. The ``taskforge_*`` families are the target's own (tests read them);
``render`` also writes the real gateway's prom-client families (``tasks_created_total{type}``,
``http_requests_total``, ``http_request_duration_seconds``, ``process_*``, ``nodejs_*``), so
whatever reads the real ``/metrics`` reads this one too.
"""

from __future__ import annotations

import os
import resource
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
        self.tasks_dispatched: dict[str, int] = {}
        self.outbox_passes = 0
        self.outbox_interval = 0.0  # seconds until the next outbox pass (0 = no outbox)
        self.loop_lag: list[float] = []  # recent event-loop lag samples (seconds), see server
        self.wall_started = time.time()

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
        add("# HELP taskforge_tasks_dispatched_total Tasks the outbox moved to a worker queue, by type.")
        add("# TYPE taskforge_tasks_dispatched_total counter")
        for t, n in sorted(self.tasks_dispatched.items()):
            add(f'taskforge_tasks_dispatched_total{{type="{t}"}} {n}')
        add("# HELP taskforge_outbox_passes_total Outbox passes made.")
        add("# TYPE taskforge_outbox_passes_total counter")
        add(f"taskforge_outbox_passes_total {self.outbox_passes}")
        add("# HELP taskforge_outbox_interval_seconds Seconds until the next outbox pass.")
        add("# TYPE taskforge_outbox_interval_seconds gauge")
        add(f"taskforge_outbox_interval_seconds {self.outbox_interval!r}")
        add("# HELP taskforge_uptime_seconds Seconds since the target started.")
        add("# TYPE taskforge_uptime_seconds gauge")
        add(f"taskforge_uptime_seconds {self.uptime():.3f}")
        self._render_real(add)
        return "\n".join(out) + "\n"

    def _render_real(self, add: Callable[[str], None]) -> None:
        """The real gateway's prom-client families (app metrics + Node's default metrics)."""
        add("# HELP tasks_created_total Total number of tasks created")
        add("# TYPE tasks_created_total counter")
        for t, n in sorted(self.tasks_created.items()):
            add(f'tasks_created_total{{type="{t}"}} {n}')
        add("# HELP http_requests_total Total number of HTTP requests")
        add("# TYPE http_requests_total counter")
        for (route, status), n in sorted(self.requests.items(), key=lambda kv: str(kv[0])):
            method, _, path = route.partition(" ")
            add(f'http_requests_total{{method="{method}",route="{path}",status_code="{status}"}} {n}')
        add("# HELP http_request_duration_seconds Duration of HTTP requests in seconds")
        add("# TYPE http_request_duration_seconds histogram")
        for route, counts in sorted(self.hist.items()):
            method, _, path = route.partition(" ")
            labels = f'method="{method}",route="{path}"'
            cum = 0
            for le, n in zip((*map(repr, BUCKETS), "+Inf"), counts, strict=True):
                cum += n
                add(f'http_request_duration_seconds_bucket{{{labels},le="{le}"}} {cum}')
            add(f"http_request_duration_seconds_sum{{{labels}}} {self.hist_sum[route]!r}")
            add(f"http_request_duration_seconds_count{{{labels}}} {cum}")
        ru = resource.getrusage(resource.RUSAGE_SELF)
        rss = _rss_bytes()
        lag = sorted(self.loop_lag) or [0.0]
        mean = sum(lag) / len(lag)
        std = (sum((x - mean) ** 2 for x in lag) / len(lag)) ** 0.5
        try:
            fds = len(os.listdir("/proc/self/fd"))
        except OSError:
            fds = 0
        gauges: list[tuple[str, str, float]] = [
            ("process_cpu_user_seconds_total", "counter", ru.ru_utime),
            ("process_cpu_system_seconds_total", "counter", ru.ru_stime),
            ("process_cpu_seconds_total", "counter", ru.ru_utime + ru.ru_stime),
            ("process_start_time_seconds", "gauge", round(self.wall_started)),
            ("process_resident_memory_bytes", "gauge", rss),
            ("process_virtual_memory_bytes", "gauge", rss),
            ("process_heap_bytes", "gauge", rss),
            ("process_open_fds", "gauge", fds),
            ("process_max_fds", "gauge", resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
            ("nodejs_eventloop_lag_seconds", "gauge", lag[-1]),
            ("nodejs_eventloop_lag_min_seconds", "gauge", lag[0]),
            ("nodejs_eventloop_lag_max_seconds", "gauge", lag[-1]),
            ("nodejs_eventloop_lag_mean_seconds", "gauge", mean),
            ("nodejs_eventloop_lag_stddev_seconds", "gauge", std),
            ("nodejs_eventloop_lag_p50_seconds", "gauge", lag[len(lag) // 2]),
            ("nodejs_eventloop_lag_p90_seconds", "gauge", lag[int(len(lag) * 0.9)]),
            ("nodejs_eventloop_lag_p99_seconds", "gauge", lag[int(len(lag) * 0.99)]),
            ("nodejs_active_resources_total", "gauge", self.ws_open),
            ("nodejs_active_handles_total", "gauge", self.ws_open),
            ("nodejs_active_requests_total", "gauge", 0),
            ("nodejs_heap_size_total_bytes", "gauge", rss),
            ("nodejs_heap_size_used_bytes", "gauge", rss),
            ("nodejs_external_memory_bytes", "gauge", 0),
        ]
        for name, kind, value in gauges:
            add(f"# HELP {name} {name.replace('_', ' ')}")
            add(f"# TYPE {name} {kind}")
            add(f"{name} {value}")
        for name in ("nodejs_active_resources", "nodejs_active_handles", "nodejs_active_requests"):
            add(f"# HELP {name} Active libuv {name.rsplit('_', 1)[1]}, by type.")
            add(f"# TYPE {name} gauge")
            add(f'{name}{{type="Socket"}} {self.ws_open}')
        for name in ("total", "used", "available"):
            add(f"# HELP nodejs_heap_space_size_{name}_bytes Process heap space size {name}.")
            add(f"# TYPE nodejs_heap_space_size_{name}_bytes gauge")
            add(f'nodejs_heap_space_size_{name}_bytes{{space="old"}} 0')
        add("# HELP nodejs_version_info Node.js version info.")
        add("# TYPE nodejs_version_info gauge")
        add('nodejs_version_info{version="v20.0.0",major="20",minor="0",patch="0"} 1')
        add("# HELP nodejs_gc_duration_seconds Garbage collection duration by kind.")
        add("# TYPE nodejs_gc_duration_seconds histogram")
        add('nodejs_gc_duration_seconds_bucket{le="+Inf",kind="major"} 0')
        add('nodejs_gc_duration_seconds_sum{kind="major"} 0')
        add('nodejs_gc_duration_seconds_count{kind="major"} 0')


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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
