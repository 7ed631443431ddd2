"""WebSocket options, per-connection and per-task state, and the status-message parser.

The driver itself (``engine.ws.WsDriver``) opens the connections, subscribes and records rows;
this module holds what it needs that is not I/O: ``WsOptions`` (validated), ``Conn`` (one
logical connection that lives through reconnects), ``TaskInfo`` (what this run knows of a task it
created) and ``parse_message`` (one ``json.loads`` per frame, never raises).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from taskforge_perf.errors import ConfigError
from taskforge_perf.schema import WS_SUBSCRIBE_REASONS as SUBSCRIBE_REASONS  # noqa: F401
from taskforge_perf.users import User

#: Statuses that end a task's timeline.
FINAL = frozenset(("completed", "failed"))

#: A socket closed with no message within this time of opening, with no close code (1005) or a
#: policy close (1008), is a rejection. An abrupt close (1006, a reset) is a drop, never a rejection.
REJECT_WINDOW_NS = 200_000_000
#: Codes of the gateway's rejection of an open socket (bad, missing or revoked token).
REJECT_CODES = frozenset((1005, 1008))
#: HTTP statuses of a refused upgrade that mean "your token is not accepted".
REJECT_STATUSES = frozenset((401, 403))
#: Where sampled subscriptions pick their task ids (see ``WsOptions.sample_from``).
SAMPLE_FROM = ("own", "all")


def _num(name: str, v: Any, *, lo: float, strict: bool = False, fix: str = "") -> float:
    if (
        isinstance(v, bool)
        or not isinstance(v, int | float)
        or not math.isfinite(v)
        or (v <= lo if strict else v < lo)
    ):
        op = ">" if strict else ">="
        raise ConfigError(f"WsOptions.{name} must be a finite number {op} {lo:g} (got {v!r}){fix}")
    return float(v)


@dataclass(frozen=True, kw_only=True)
class WsOptions:
    """How the WebSocket half of a run behaves (defaults follow the seed tester).

    Opening: ``batch_size`` connections are started, then ``batch_pause`` s of pause (the seed
    pauses 100 ms every 10), and a batch waits while ``batch_size`` handshakes are still in
    flight; a socket still opening after ``connect_timeout`` s is terminated and recorded as
    ``connect_error`` / ``timeout``.

    Activity: every ``subscribe_interval`` s a sample of the open connections subscribes to a
    recent task id (a random UUID when there is none). ``sample_from="own"`` (the default) picks
    from the connection's user's own recent tasks, so a user only ever subscribes to its own tasks;
    ``"all"`` is the seed's behaviour (the run-wide FIFO of recent tasks, any user's): it makes
    other users' updates expected, so the isolation rows they cause are flagged
    ``error="expected"`` and counted apart (``ws_summary``'s ``isolation_expected``).
    ``subscribe_sample`` is a fraction of the open connections (a float in (0, 1]) or a count (an
    int >= 1); the default 1.0 is the seed's "every connection, every 2 s". ``track_own_tasks``
    subscribes each task created over HTTP at once on a connection of the user who created it (a
    task created before any of its user's sockets exists is subscribed when one opens).

    Robustness: a subscription with no message within ``resubscribe_after`` s is resubscribed
    once. The first subscription is counted lost only when the resubscribe is answered (within
    ``lost_confirm_window`` s) with an update that no other socket of the user receives within
    ``lost_confirm_window`` s of that answer, and that the resubscribing socket receives only once:
    the gateway's cached status, which only the resubscribing socket gets. A live update reaches
    every socket of a subscribed user, so it is never a loss. The window must exceed the time the
    gateway takes to deliver one dispatch batch to all sockets (~20 ms on the real gateway; 1 s
    leaves room for a loaded machine). A user with a single open socket has no other socket to
    compare with: its loss is counted only when the answer came within 250 ms of the resubscribe
    (open two or more sockets per user for exact counts). After a server-side drop the connection
    reconnects (``reconnect``) with exponential backoff ``backoff_initial`` *
    ``backoff_factor`` ** n, capped at ``backoff_max``.

    Isolation: every update for a task another user of this run created is an ``isolation`` row.
    ``isolation_probe`` subscribes, every interval, one connection to another user's recent task
    to look for such leaks on purpose.
    """

    batch_size: int = 10
    batch_pause: float = 0.1
    connect_timeout: float = 10.0
    subscribe_interval: float = 2.0
    subscribe_sample: float | int = 1.0
    track_own_tasks: bool = True
    resubscribe_after: float = 2.0
    reconnect: bool = True
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    backoff_factor: float = 2.0
    isolation_probe: bool = False
    max_subscriptions_per_conn: int = 256
    lost_confirm_window: float = 1.0
    sample_from: str = "own"

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_subscriptions_per_conn"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"WsOptions.{name} must be an integer >= 1 (got {v!r})")
        _num("batch_pause", self.batch_pause, lo=0)
        _num("connect_timeout", self.connect_timeout, lo=0, strict=True, fix="; e.g. 10 (seconds)")
        _num(
            "subscribe_interval",
            self.subscribe_interval,
            lo=0,
            strict=True,
            fix="; e.g. 2.0 (seconds); set subscribe_sample=0 to turn sampling off",
        )
        _num(
            "resubscribe_after",
            self.resubscribe_after,
            lo=0,
            strict=True,
            fix="; e.g. 2.0 (seconds)",
        )
        _num(
            "lost_confirm_window",
            self.lost_confirm_window,
            lo=0,
            strict=True,
            fix="; e.g. 1.0 (seconds, longer than the gateway's dispatch batch)",
        )
        if self.sample_from not in SAMPLE_FROM:
            raise ConfigError(
                f"WsOptions.sample_from must be 'own' (each user samples its own tasks) or 'all' "
                f"(any user's, as the seed did) (got {self.sample_from!r})"
            )
        _num("backoff_initial", self.backoff_initial, lo=0, strict=True, fix="; e.g. 0.1 (seconds)")
        _num("backoff_max", self.backoff_max, lo=0, strict=True, fix="; e.g. 5 (seconds)")
        _num("backoff_factor", self.backoff_factor, lo=1, fix="; e.g. 2")
        if self.backoff_max < self.backoff_initial:
            raise ConfigError(
                f"WsOptions.backoff_max ({self.backoff_max}) must be >= backoff_initial "
                f"({self.backoff_initial})"
            )
        s = self.subscribe_sample
        if isinstance(s, bool) or not isinstance(s, int | float) or math.isnan(s):
            raise ConfigError(
                f"WsOptions.subscribe_sample must be a fraction in [0, 1] or a count >= 0 (got {s!r})"
            )
        if isinstance(s, float) and not 0.0 <= s <= 1.0:
            raise ConfigError(
                f"WsOptions.subscribe_sample={s!r}: a float is a fraction of the open connections and "
                "must be in [0, 1]; give an int for a count of connections"
            )
        if isinstance(s, int) and s < 0:
            raise ConfigError(f"WsOptions.subscribe_sample must be >= 0 (got {s!r}); 0 turns sampling off")
        for name in ("track_own_tasks", "reconnect", "isolation_probe"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"WsOptions.{name} must be True or False (got {getattr(self, name)!r})")

    def sample_size(self, open_count: int) -> int:
        """How many of ``open_count`` open connections subscribe this interval."""
        s = self.subscribe_sample
        if isinstance(s, float):
            return min(open_count, math.ceil(s * open_count)) if s > 0 else 0
        return min(open_count, s)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0-based)."""
        return min(self.backoff_max, self.backoff_initial * self.backoff_factor ** min(attempt, 60))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe copy for run metadata."""
        return dict(self.__dict__)


class TaskInfo:
    """What this run knows of a task it created."""

    __slots__ = ("task_type", "created_ns", "owner", "subscribed_ns", "last_msg_ns", "done")

    def __init__(self, task_type: str | None, created_ns: int, owner: str) -> None:
        self.task_type = task_type
        self.created_ns = created_ns
        self.owner = owner
        self.subscribed_ns: int | None = None  # first subscribe
        self.last_msg_ns = -1
        self.done = False


class Conn:
    """One logical connection: a number, a user, and its subscriptions (kept across reconnects)."""

    __slots__ = (
        "index",
        "user",
        "ws",
        "task",
        "subs",
        "opened_ns",
        "got_message",
        "closing",
        "closed_by_us",
        "attempt",
        "confirmed",
        "handshake_ns",
        "reconnecting",
    )

    def __init__(self, index: int, user: User) -> None:
        self.index = index
        self.user = user
        self.ws: Any = None  # the open websockets ClientConnection, or None
        self.task: Any = None  # its asyncio task
        self.subs: dict[str, int] = {}  # task id -> when this connection subscribed (ns)
        self.opened_ns = 0
        self.got_message = False
        self.closing = False  # we asked it to stop for good
        self.closed_by_us = False
        self.attempt = 0  # consecutive failed (re)connects
        self.confirmed = False  # its connect row is written (it outlived the rejection window)
        self.handshake_ns = 0
        self.reconnecting = False


#: Parsed frame: (kind, task_id, status, progress, error)
Parsed = tuple[str, "str | None", "str | None", "float | None", "str | None"]


def parse_message(raw: str | bytes) -> Parsed:
    """Classify one frame; never raises.

    ``("message", id, status, progress, None)`` for a status update (``{success: true}`` of the
    image and video workers and ``{url, cached: true}`` of the image worker are ``completed``,
    ``{success: false}`` is ``failed``); ``("message", id,
    "unknown", None, "unknown_shape")`` for JSON of another shape; ``("error", id, None, None,
    "server_error")`` for ``{"type": "error"}``; ``("error", None, None, None, "unparsable")`` for a
    frame that is not JSON.
    """
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return ("error", None, None, None, "unparsable")
    if not isinstance(msg, dict):
        return ("message", None, "unknown", None, "unknown_shape")
    tid = msg.get("taskId")
    if not isinstance(tid, str):
        tid = None
    if msg.get("type") == "error":
        return ("error", tid, None, None, "server_error")
    status = msg.get("status")
    prog = msg.get("progress")
    progress = float(prog) if isinstance(prog, int | float) and not isinstance(prog, bool) else None
    if not isinstance(status, str) or not status:
        ok = msg.get("success")
        if ok is True or msg.get("cached") is True:
            status, progress = "completed", 100.0 if progress is None else progress
        elif ok is False:
            status = "failed"
        else:
            return ("message", tid, "unknown", progress, "unknown_shape")
    if tid is None:
        return ("message", None, status, progress, "unknown_shape")
    return ("message", tid, status, progress, None)
