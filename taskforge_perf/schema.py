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
    "group": pl.Categorical(),  # the user's UserGroup name; null without groups
    "session": pl.UInt32(),  # the session's number (Sessions); null outside sessions
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
    "session": pl.UInt32(),  # the session's number (Sessions watch); null outside sessions
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
    "cancelled",  # the run ended (or was cancelled) while the request was in flight
    "client",  # the request could not be built (payload builder raised, body not serialisable)
    "other",
)

# Outcome classes of HTTP rows (issue 11). Every analysis, threshold and comparison uses these.
#: A row is *answered* when the target sent a complete response: any status, 4xx and 5xx included.
ANSWERED_ERRORS: tuple[str, ...] = ("http_4xx", "http_5xx")
#: The target failed to answer properly: these count as target errors.
TARGET_FAILURE_KINDS: tuple[str, ...] = (
    "refused",
    "reset",
    "timeout",
    "dns",
    "tls",
    "protocol",
    "bad_body",
    "other",
)
#: The tester did not send the request, or cut it itself: counted and shown on their own, never as
#: target errors, and never inside latency percentiles.
TESTER_SIDE_KINDS: tuple[str, ...] = ("dropped", "cancelled", "auth", "client")
#: Names of the outcome classes, in display order.
OUTCOME_CLASSES: tuple[str, ...] = ("answered", "target_failure", "tester_side")

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
    "isolation",  # an update received for a task another user of the run created (always recorded)
)

#: Error kinds of WebSocket rows.
WS_ERROR_KINDS: tuple[str, ...] = (
    "rejected",  # closed 1005/1008 within 200 ms with no message (bad token), or upgrade 401/403
    "timeout",
    "refused",
    "dropped",  # server closed or reset an established socket (a reset is never "rejected")
    "unparsable",  # a frame that is not JSON
    "unknown_shape",  # JSON of a shape we do not know
    "lost_subscription",  # a resubscribe's answer no other socket of the user got: the first was lost
    "expected",  # isolation rows caused by WsOptions(sample_from="all") (cross-user sampling)
    "server_error",  # the gateway answered {"type": "error", ...} (e.g. "Not your task")
    "auth",  # no token could be obtained for the connection's user
    "cancelled",  # the run ended mid-handshake, or was cancelled and the socket had to be aborted
    "other",
)

#: Values of ``status`` on subscribe / resubscribe rows: why the subscribe was sent.
WS_SUBSCRIBE_REASONS: tuple[str, ...] = ("own", "sample", "random", "probe", "restore")


def outcome_expr(error: str = "error") -> pl.Expr:
    """The outcome class of each HTTP row (``OUTCOME_CLASSES``) as a String expression."""
    err = pl.col(error).cast(pl.String)
    return (
        pl.when(err.is_null() | err.is_in(ANSWERED_ERRORS))
        .then(pl.lit("answered"))
        .when(err.is_in(TESTER_SIDE_KINDS))
        .then(pl.lit("tester_side"))
        .otherwise(pl.lit("target_failure"))
    )


def answered_expr(error: str = "error") -> pl.Expr:
    """True for rows the target answered (any status): the rows latency percentiles cover."""
    err = pl.col(error).cast(pl.String)
    return err.is_null() | err.is_in(ANSWERED_ERRORS)


def sent_expr(error: str = "error") -> pl.Expr:
    """True for rows the target saw (answered or a target failure): the denominator of error rates."""
    return ~pl.col(error).cast(pl.String).is_in(TESTER_SIDE_KINDS).fill_null(False)


def with_schema_columns(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """``frame`` with every column of ``schema`` it lacks added as nulls (frames saved or built
    before a column was added to the schema)."""
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in frame.columns]
    return frame.with_columns(missing) if missing else frame


def empty_http_frame() -> pl.DataFrame:
    """An empty frame with the HTTP schema."""
    return pl.DataFrame(schema=HTTP_SCHEMA)


def empty_ws_frame() -> pl.DataFrame:
    """An empty frame with the WebSocket schema."""
    return pl.DataFrame(schema=WS_SCHEMA)


#: ``run.health``: the generator's own health per monitor interval (``engine.health``).
HEALTH_SCHEMA: dict[str, pl.DataType] = {
    "t_s": pl.Float64(),  # end of the interval, seconds since the load started
    "interval_s": pl.Float64(),
    "phase": pl.String(),
    "ticks": pl.Int64(),
    "lag_p50_ms": pl.Float64(),
    "lag_p99_ms": pl.Float64(),
    "lag_max_ms": pl.Float64(),
    "own_lag_p99_ms": pl.Float64(),  # the lag minus the time spent waiting for a CPU
    "cpu": pl.Float64(),
    "cpu_wait": pl.Float64(),  # share of the interval runnable but not running (machine busy)
    "starts": pl.Int64(),
    "lateness_p99_ms": pl.Float64(),
    "lateness_max_ms": pl.Float64(),
    "in_flight": pl.Int64(),
}
