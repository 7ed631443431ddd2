"""``taskforge-perf target``: run the reference target in this process until SIGTERM/SIGINT.

Once both ports listen it prints exactly one JSON line to stdout,
``{"base_url": "http://127.0.0.1:PORT", "ws_url": "ws://127.0.0.1:WSPORT", "pid": PID}``.
Spec syntax of the knobs: see :mod:`taskforge_perf.target.config`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from taskforge_perf.target.config import TargetConfig, parse_duration

_EPILOG = """\
delays: '20ms' (fixed), 'exp:20ms' (exponential, mean), 'uniform:5ms:15ms', 'normal:20ms:5ms'.
per-endpoint maps: 'POST /tasks=exp:20ms' or 'GET /health=0.1'; '*' = every endpoint; repeat the
flag or separate entries with commas. endpoints: POST /auth/signup, POST /auth/login,
POST /auth/refresh, POST /auth/logout, POST /auth/remove-test-users, POST /tasks, GET /health,
GET /health/live, GET /health/ready, GET /metrics.
examples:
  taskforge-perf target --port 3000 --ws-port 4000
  taskforge-perf target --latency 'POST /tasks=exp:20ms' --error-rate 'POST /tasks=0.05'
  taskforge-perf target --stall 10:3 --drop-rate 0.01 --ws-drop-every 30
  taskforge-perf target --profile candidate       # POST /tasks +6 ms (30% of a 20 ms base)
  taskforge-perf target --max-concurrency 8 --service-time 4ms   # saturates near 2,000 req/s
  taskforge-perf target --real-quirks              # reproduce the real system's quirks
  taskforge-perf target --real-quirks --outbox-time-scale 0.05   # ... with a 20x faster outbox
  taskforge-perf target --real-timing              # quirks + the real latencies and capacity
"""


def _dur(text: str) -> float:
    try:
        return parse_duration(text, bare_unit="s")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the target's flags to ``parser`` (``taskforge_perf.cli`` wires it as ``target``)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    a = parser.add_argument
    a("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    a("--port", type=int, default=0, help="HTTP API port (0 = a free port; default 0)")
    a("--ws-port", type=int, default=0, help="status gateway port (0 = a free port; default 0)")
    a("--access-ttl", type=_dur, default=900.0, help="access-token lifetime (default 900s)")
    a("--refresh-ttl", type=_dur, default=7 * 24 * 3600.0, help="refresh-token lifetime (7 days)")
    a(
        "--hash-iterations",
        type=int,
        default=5000,
        help="PBKDF2 rounds per password hash (default 5000, a few ms; "
        "~150000 approaches the real 60-90 ms bcrypt)",
    )
    a(
        "--latency",
        action="append",
        default=[],
        metavar="'ENDPOINT=DELAY'",
        help="added latency per endpoint, e.g. 'POST /tasks=exp:20ms' (repeatable)",
    )
    a(
        "--error-rate",
        action="append",
        default=[],
        metavar="'ENDPOINT=FRACTION'",
        help="fraction of requests answered 500, e.g. 'POST /tasks=0.5' (repeatable)",
    )
    a(
        "--stall",
        action="append",
        default=[],
        metavar="START:DURATION",
        help="freeze all HTTP responses for DURATION s from START s after ready (repeatable)",
    )
    a(
        "--drop-rate",
        type=float,
        default=0.0,
        help="fraction of HTTP requests answered by aborting the TCP connection",
    )
    a(
        "--ws-drop-every",
        type=_dur,
        default=0.0,
        help="abort every open WebSocket each N s (0 = off)",
    )
    a(
        "--ws-drop-rate",
        type=float,
        default=0.0,
        help="per second, probability that each open WebSocket is aborted",
    )
    a(
        "--ws-garbage-every",
        type=_dur,
        default=0.0,
        help="every N s send each open WebSocket a non-JSON frame and an unknown-shape JSON (0 = off)",
    )
    a(
        "--max-concurrency",
        type=int,
        default=0,
        help="capacity: requests served at once, each holding a slot --service-time "
        "(capacity ~ N / service-time req/s; 0 = unlimited)",
    )
    a(
        "--service-time",
        type=_dur,
        default=0.0,
        help="per-request service time under --max-concurrency",
    )
    a(
        "--profile",
        choices=("baseline", "candidate"),
        default="baseline",
        help="candidate: POST /tasks +30%% of --candidate-base (6 ms) and configured latency x1.3",
    )
    a("--candidate-base", type=_dur, default=0.020, help="base latency of the candidate profile")
    a(
        "--leak",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send task updates to every subscribed user like the real system (default) or "
        "only to the task's owner (--no-leak)",
    )
    a("--ping-interval", type=_dur, default=30.0, help="WebSocket ping interval (default 30s)")
    a(
        "--token-check-delay",
        type=_dur,
        default=0.002,
        help="with --real-quirks, the async token check that loses early subscribes (2ms, as the "
        "real gateway's 0-2 ms)",
    )
    a(
        "--task-duration",
        action="append",
        default=[],
        metavar="'TYPE=DELAY'",
        help="per-type task duration, e.g. 'compress-video=uniform:300ms:900ms' (repeatable)",
    )
    a(
        "--worker-concurrency",
        type=int,
        default=None,
        help="workers per task type (default 4; 1 with --real-quirks, as the real consumers)",
    )
    a("--task-failure-rate", type=float, default=0.0, help="fraction of tasks that fail")
    a(
        "--outbox-interval",
        type=_dur,
        default=None,
        help="outbox poll interval (default: 5s with --real-quirks, else immediate dispatch)",
    )
    a(
        "--outbox-first-delay",
        type=_dur,
        default=None,
        help="first outbox pass after this (default: 60s with --real-quirks, else one interval)",
    )
    a("--outbox-batch", type=int, default=20, help="tasks dispatched per type per poll (20)")
    a(
        "--outbox-time-scale",
        type=float,
        default=1.0,
        help="multiply every outbox timing (0.05: the real 60s/5s become 3s/0.25s)",
    )
    a("--real-quirks", action="store_true", help="reproduce the real system's quirks")
    a(
        "--real-timing",
        action="store_true",
        help="--real-quirks plus the real latencies and capacity (~450 req/s, bcrypt-like auth)",
    )
    a("--seed", type=int, default=None, help="seed of every random choice")
    a(
        "--exit-with-parent",
        action="store_true",
        help="exit when stdin reaches EOF (ReferenceTarget uses it: no orphans)",
    )


def config_from_args(args: argparse.Namespace) -> TargetConfig:
    """Build the ``TargetConfig`` the parsed flags describe (raises ValueError naming the field)."""
    return TargetConfig(
        host=args.host,
        port=args.port,
        ws_port=args.ws_port,
        access_ttl=args.access_ttl,
        refresh_ttl=args.refresh_ttl,
        hash_iterations=args.hash_iterations,
        latency=args.latency,
        error_rate=args.error_rate,
        stalls=args.stall,
        drop_rate=args.drop_rate,
        ws_drop_every=args.ws_drop_every,
        ws_drop_rate=args.ws_drop_rate,
        ws_garbage_every=args.ws_garbage_every,
        max_concurrency=args.max_concurrency,
        service_time=args.service_time,
        profile=args.profile,
        candidate_base=args.candidate_base,
        leak=args.leak,
        ping_interval=args.ping_interval,
        token_check_delay=args.token_check_delay,
        task_durations=args.task_duration,
        worker_concurrency=args.worker_concurrency,
        task_failure_rate=args.task_failure_rate,
        outbox_interval=args.outbox_interval,
        outbox_first_delay=args.outbox_first_delay,
        outbox_batch=args.outbox_batch,
        outbox_time_scale=args.outbox_time_scale,
        real_quirks=args.real_quirks,
        real_timing=args.real_timing,
        seed=args.seed,
    )


class _EofWatcher(asyncio.Protocol):
    def __init__(self, on_eof: Callable[[], None]) -> None:
        self._on_eof = on_eof

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        self._on_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_eof()


async def _serve(config: TargetConfig, exit_with_parent: bool) -> int:
    from taskforge_perf.target.server import TargetServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    server = TargetServer(config)
    base_url, ws_url = await server.start()
    sigs = (signal.SIGTERM, signal.SIGINT)
    for sig in sigs:
        loop.add_signal_handler(sig, stop.set)
    transport: Any = None
    if exit_with_parent:
        transport, _ = await loop.connect_read_pipe(lambda: _EofWatcher(stop.set), sys.stdin)
    sys.stdout.write(json.dumps({"base_url": base_url, "ws_url": ws_url, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)
        if transport is not None:
            transport.close()
        await server.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the target until SIGTERM/SIGINT (or stdin EOF with ``--exit-with-parent``)."""
    try:
        config = config_from_args(args)
    except ValueError as e:
        print(f"taskforge-perf target: {e}", file=sys.stderr)
        return 2
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_serve(config, args.exit_with_parent))
