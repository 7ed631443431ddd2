"""Column schemas of the recorded frames, and the error kinds rows may carry.

Every layer agrees on these: the recorder builds frames with them, the analysis reads them, and
saved runs store them. Times are integer nanoseconds since the run's start (a monotonic clock);
``meta["wall_start_ns"]`` anchors that zero on the wall clock.
"""

from __future__ import annotations

import polars as pl

#: One row per HTTP request (auth traffic included).
HTTP_SCHEMA: dict[str, pl.DataType] = {
    "t_intended": pl.Int64(),  # when the schedule wanted the request to start
    "t_start": pl.Int64(),  # when it actually started
    "t_end": pl.Int64(),  # when the response (or the failure) was complete
    "status": pl.Int16(),  # HTTP status; 0 for a transport failure
    "error": pl.Categorical(),  # null when the request succeeded; see ERROR_KINDS
    "bytes_in": pl.UInt32(),
    "bytes_out": pl.UInt32(),
    "endpoint": pl.Categorical(),  # display name, e.g. "POST /tasks generate-pdf"
    "method": pl.Categorical(),
    "user": pl.Categorical(),  # the user's email (never a token or password)
    "phase": pl.Categorical(),  # "setup", "teardown" or the plan phase's name
    "worker": pl.UInt16(),  # the process/shard that sent it
    "task_id": pl.String(),  # set on task creation rows
}

#: One row per WebSocket event.
WS_SCHEMA: dict[str, pl.DataType] = {
    "t": pl.Int64(),  # ns since run start
    "kind": pl.Categorical(),  # see WS_KINDS
    "conn": pl.UInt32(),  # connection number within the worker
    "user": pl.Categorical(),
    "task_id": pl.String(),
    "task_type": pl.Categorical(),  # known when the task was created by this run
    "status": pl.Categorical(),  # message rows: processing / completed / failed / unknown;
    # subscribe rows: the reason (WS_SUBSCRIBE_REASONS; "random" = a random UUID, FIFO empty)
    "progress": pl.Float32(),
    "since_created_ns": pl.Int64(),  # message rows: time since the task was created (202 seen)
    "since_subscribe_ns": pl.Int64(),  # message rows: time since the subscribe was sent
    "handshake_ns": pl.Int64(),  # connect rows: opening handshake duration
    "code": pl.Int32(),  # close rows: close code (1005 = none received)
    "error": pl.Categorical(),  # null when fine; see WS_ERROR_KINDS
    "phase": pl.Categorical(),
    "worker": pl.UInt16(),
}

#: Error kinds of HTTP rows.
ERROR_KINDS: tuple[str, ...] = (
    "refused",  # connection refused
    "reset",  # connection reset / closed mid-request
    "timeout",  # request timeout (connect or read)
    "dns",  # name resolution failed
    "tls",  # TLS handshake failed
    "protocol",  # garbage on the wire, unparsable HTTP
    "http_4xx",  # status 400..499
    "http_5xx",  # status >= 500
    "bad_body",  # 2xx whose body could not be parsed where one was needed
    "auth",  # no valid token could be obtained for the user (refresh and login failed)
    "dropped",  # an open-model request that never started before the run ended
    "cancelled",  # the run was cancelled while the request was in flight
    "other",
)

#: Kinds of WebSocket rows.
WS_KINDS: tuple[str, ...] = (
    "connect",
    "connect_error",
    "subscribe",
    "resubscribe",
    "message",
    "close",
    "error",
    "reconnect",
    "isolation",  # an update received for another user's task (isolation probe)
)

#: Error kinds of WebSocket rows.
WS_ERROR_KINDS: tuple[str, ...] = (
    "rejected",  # accepted then closed at once with no message (bad token), or policy close
    "timeout",
    "refused",
    "dropped",  # server closed an established socket
    "unparsable",  # a frame that is not JSON
    "unknown_shape",  # JSON of a shape we do not know
    "lost_subscription",  # a resubscribe answered at once with a cached status: the first was lost
    "server_error",  # the gateway answered {"type": "error", ...} (e.g. "Not your task")
    "auth",  # no token could be obtained for the connection's user
    "cancelled",  # the run was cancelled and the socket had to be aborted
    "other",
)

#: Values of ``status`` on subscribe / resubscribe rows: why the subscribe was sent.
WS_SUBSCRIBE_REASONS: tuple[str, ...] = ("own", "sample", "random", "probe", "restore")


def empty_http_frame() -> pl.DataFrame:
    """An empty frame with the HTTP schema."""
    return pl.DataFrame(schema=HTTP_SCHEMA)


def empty_ws_frame() -> pl.DataFrame:
    """An empty frame with the WebSocket schema."""
    return pl.DataFrame(schema=WS_SCHEMA)
