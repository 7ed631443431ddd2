"""Seeded synthetic runs: HTTP ``events`` and WebSocket ``ws_events`` frames with the exact schemas.

For tests, benchmarks, docs and notebooks that need a run without sending traffic. Randomness comes
from Polars' seeded hash of the row number (uniforms) turned into log-normal latencies with the
Box-Muller transform, so 10 million rows take about a second and no numpy is needed. The same seed
gives the same frame with the same Polars version (the hash is not promised stable across versions).

>>> from taskforge_perf.synthetic import synthetic_events
>>> ev = synthetic_events(1_000, seed=1)
>>> ev.height
1000
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from taskforge_perf.schema import HTTP_SCHEMA, WS_SCHEMA, with_schema_columns

__all__ = [
    "DEFAULT_ENDPOINTS",
    "DEFAULT_PHASES",
    "EndpointSpec",
    "synthetic_events",
    "synthetic_ws_events",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSpec:
    """One synthetic endpoint: weight in the mix and a log-normal latency (median, sigma)."""

    name: str
    method: str
    weight: float
    median_ms: float
    sigma: float = 0.5
    status: int = 200
    creates_task: bool = False

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"EndpointSpec.weight must be > 0 (got {self.weight}) for {self.name!r}")
        if self.median_ms <= 0:
            raise ValueError(f"EndpointSpec.median_ms must be > 0 (got {self.median_ms})")
        if self.sigma < 0:
            raise ValueError(f"EndpointSpec.sigma must be >= 0 (got {self.sigma})")


#: The TaskForge default mix (DESIGN.md section 4) with plausible loopback latencies.
DEFAULT_ENDPOINTS: tuple[EndpointSpec, ...] = (
    EndpointSpec(name="GET /health", method="GET", weight=10, median_ms=2.0, sigma=0.4),
    EndpointSpec(
        name="POST /tasks generate-pdf",
        method="POST",
        weight=30,
        median_ms=8.0,
        sigma=0.5,
        status=202,
        creates_task=True,
    ),
    EndpointSpec(
        name="POST /tasks compress-video",
        method="POST",
        weight=25,
        median_ms=9.0,
        sigma=0.5,
        status=202,
        creates_task=True,
    ),
    EndpointSpec(
        name="POST /tasks resize-image",
        method="POST",
        weight=35,
        median_ms=7.0,
        sigma=0.5,
        status=202,
        creates_task=True,
    ),
    EndpointSpec(name="GET /metrics", method="GET", weight=5, median_ms=3.0, sigma=0.4),
)

#: (name, duration_s, relative rate) of each phase.
DEFAULT_PHASES: tuple[tuple[str, float, float], ...] = (
    ("warmup", 10.0, 0.5),
    ("peak", 40.0, 1.0),
    ("cooldown", 10.0, 0.25),
)

_ERROR_KINDS = ("http_5xx", "timeout", "http_4xx", "reset")
_ERROR_STATUS = (500, 0, 429, 0)


def _uniform(idx: pl.Expr, seed: int, stream: int) -> pl.Expr:
    """A uniform in [0, 1) per row, from a seeded 64-bit hash of the row index."""
    h = idx.hash(seed=(seed * 1_000_003 + stream * 7919) & 0xFFFFFFFF)
    return (h // 2048).cast(pl.Float64) * (2.0**-53)


def _normal(idx: pl.Expr, seed: int, stream: int) -> pl.Expr:
    """A standard normal per row (Box-Muller over two independent uniforms)."""
    u1 = 1.0 - _uniform(idx, seed, stream)  # (0, 1]
    u2 = _uniform(idx, seed, stream + 1)
    return (-2.0 * u1.log()).sqrt() * (2.0 * math.pi * u2).cos()


def _choice(u: pl.Series, weights: Sequence[float]) -> pl.Series:
    """Index of the weighted choice for each uniform ``u``."""
    total = float(sum(weights))
    cum, acc = [], 0.0
    for w in weights[:-1]:
        acc += w / total
        cum.append(acc)
    return pl.Series(cum, dtype=pl.Float64).search_sorted(u, side="right").cast(pl.UInt32)


def synthetic_events(
    n: int = 100_000,
    *,
    seed: int = 0,
    endpoints: Sequence[EndpointSpec] = DEFAULT_ENDPOINTS,
    users: int | Sequence[str] = 20,
    phases: Sequence[tuple[str, float, float]] = DEFAULT_PHASES,
    slowdown: Mapping[str, float] | None = None,
    user_slowdown: Mapping[str, float] | None = None,
    error_fraction: float = 0.01,
    lateness_ms: float = 0.2,
    stall_fraction: float = 0.001,
    stall_ms: float = 50.0,
    workers: int = 1,
    dropped_fraction: float = 0.0,
    cancelled_fraction: float = 0.0,
) -> pl.DataFrame:
    """A seeded synthetic HTTP run with exactly ``HTTP_SCHEMA``.

    Rows are spread over ``phases`` ((name, duration_s, relative_rate)) on an open-model schedule
    (``t_intended``); each start is late by an exponential ``lateness_ms`` plus, for a fraction
    ``stall_fraction`` of rows, an extra ``stall_ms`` (so response time > latency shows up in the
    tail). Latency is log-normal per endpoint, multiplied by ``slowdown[endpoint]`` and
    ``user_slowdown[user]`` when given. ``error_fraction`` of rows fail with a kind among http_5xx,
    timeout, http_4xx and reset. Users are ``loadtest{i}@example.com`` when ``users`` is a count.
    Tester-side rows as the engine records them: ``dropped_fraction`` of rows never started (error
    "dropped", status 0, ``t_start == t_end``: zero "latency") and ``cancelled_fraction`` were cut
    by the run's end (error "cancelled", status 0); they replace the row's outcome, not add to it.

    >>> ev = synthetic_events(10_000, seed=3, slowdown={"GET /health": 1.3})
    >>> sorted(ev["phase"].unique().cast(str).to_list())
    ['cooldown', 'peak', 'warmup']
    """
    if n < 0:
        raise ValueError(f"n must be >= 0 (got {n})")
    if not endpoints:
        raise ValueError("endpoints must name at least one EndpointSpec")
    if not phases:
        raise ValueError("phases must hold at least one (name, duration_s, rate) tuple")
    if not 0.0 <= error_fraction <= 1.0:
        raise ValueError(f"error_fraction must be within [0, 1] (got {error_fraction})")
    if workers < 1:
        raise ValueError(f"workers must be >= 1 (got {workers})")
    for name, frac in (("dropped_fraction", dropped_fraction), ("cancelled_fraction", cancelled_fraction)):
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"{name} must be within [0, 1] (got {frac})")
    if dropped_fraction + cancelled_fraction > 1.0:
        raise ValueError("dropped_fraction + cancelled_fraction must be <= 1")
    user_names = [f"loadtest{i}@example.com" for i in range(users)] if isinstance(users, int) else list(users)
    if not user_names:
        raise ValueError("users must be a positive count or a non-empty list of names")
    slowdown = dict(slowdown or {})
    user_slowdown = dict(user_slowdown or {})
    unknown = set(slowdown) - {e.name for e in endpoints}
    if unknown:
        raise ValueError(f"slowdown names unknown endpoints: {sorted(unknown)}")

    # Rows per phase, proportional to duration x rate; the schedule is evenly spaced within a phase.
    mass = [d * r for _, d, r in phases]
    total_mass = sum(mass)
    counts = [int(n * m / total_mass) for m in mass]
    counts[-1] += n - sum(counts)
    intended: list[pl.Series] = []
    phase_idx: list[pl.Series] = []
    t0 = 0
    for k, ((_, dur, _), c) in enumerate(zip(phases, counts, strict=True)):
        dur_ns = int(dur * 1e9)
        step = dur_ns / c if c else 0.0
        s = (pl.int_range(0, c, dtype=pl.Int64, eager=True).cast(pl.Float64) * step).cast(pl.Int64)
        intended.append(s + t0)
        phase_idx.append(pl.repeat(k, c, dtype=pl.UInt32, eager=True))
        t0 += dur_ns
    base = pl.DataFrame(
        {
            "t_intended": pl.concat(intended) if intended else pl.Series([], dtype=pl.Int64),
            "_phase": pl.concat(phase_idx) if phase_idx else pl.Series([], dtype=pl.UInt32),
        }
    ).with_row_index("_i")
    i = pl.col("_i").cast(pl.UInt64)
    base = base.with_columns(
        _u_ep=_uniform(i, seed, 1),
        _u_user=_uniform(i, seed, 2),
        _u_err=_uniform(i, seed, 3),
        _u_late=_uniform(i, seed, 4),
        _u_stall=_uniform(i, seed, 5),
        _z=_normal(i, seed, 6),
    )
    ep_idx = _choice(base["_u_ep"], [e.weight for e in endpoints])
    user_idx = (base["_u_user"] * len(user_names)).cast(pl.UInt32).clip(upper_bound=len(user_names) - 1)
    err_idx = (
        (base["_u_err"] / max(error_fraction, 1e-300) * len(_ERROR_KINDS))
        .clip(upper_bound=len(_ERROR_KINDS))  # error_fraction=0 would overflow the cast
        .cast(pl.UInt32)
    )
    base = base.with_columns(_ep=ep_idx, _user=user_idx, _err=err_idx)

    def per_ep(values: Sequence[float], dtype: pl.DataType) -> pl.Expr:
        return pl.lit(pl.Series(values, dtype=dtype)).gather(pl.col("_ep"))

    median_ns = per_ep([e.median_ms * 1e6 * slowdown.get(e.name, 1.0) for e in endpoints], pl.Float64())
    sigma = per_ep([e.sigma for e in endpoints], pl.Float64())
    user_factor = pl.lit(pl.Series([user_slowdown.get(u, 1.0) for u in user_names], dtype=pl.Float64)).gather(
        pl.col("_user")
    )
    latency = (median_ns * (sigma * pl.col("_z")).exp() * user_factor).cast(pl.Int64)
    late = -(1.0 - pl.col("_u_late")).log() * (lateness_ms * 1e6) + pl.when(
        pl.col("_u_stall") < stall_fraction
    ).then(pl.col("_u_stall") / max(stall_fraction, 1e-300) * stall_ms * 1e6).otherwise(0.0)
    is_err = pl.col("_u_err") < error_fraction
    ok_status = per_ep([float(e.status) for e in endpoints], pl.Float64()).cast(pl.Int16)
    err_status = pl.lit(pl.Series(_ERROR_STATUS, dtype=pl.Int16)).gather(
        pl.col("_err").clip(upper_bound=len(_ERROR_KINDS) - 1)
    )
    creates = per_ep([1.0 if e.creates_task else 0.0 for e in endpoints], pl.Float64()) > 0.5
    out = base.with_columns(
        t_start=pl.col("t_intended") + late.cast(pl.Int64),
    ).with_columns(
        t_end=pl.col("t_start") + latency,
        status=pl.when(is_err).then(err_status).otherwise(ok_status),
        _is_err=is_err,
        bytes_in=per_ep([120.0 if e.creates_task else 400.0 for e in endpoints], pl.Float64()).cast(
            pl.UInt32
        ),
        bytes_out=per_ep([260.0 if e.creates_task else 90.0 for e in endpoints], pl.Float64()).cast(
            pl.UInt32
        ),
        worker=(pl.col("_i") % workers).cast(pl.UInt16),
        task_id=pl.when(creates & ~is_err).then(pl.format("task-{}-{}", pl.lit(seed), pl.col("_i"))),
    )
    ep_names = pl.Series([e.name for e in endpoints], dtype=pl.Categorical)
    methods = pl.Series([e.method for e in endpoints], dtype=pl.Categorical)
    users_s = pl.Series(user_names, dtype=pl.Categorical)
    phase_s = pl.Series([p[0] for p in phases], dtype=pl.Categorical)
    kinds = pl.Series(_ERROR_KINDS, dtype=pl.Categorical)
    err_col = kinds.gather(out["_err"].clip(upper_bound=len(_ERROR_KINDS) - 1))
    err_col = pl.select(pl.when(out["_is_err"]).then(err_col)).to_series()
    out = out.with_columns(
        endpoint=ep_names.gather(out["_ep"]),
        method=methods.gather(out["_ep"]),
        user=users_s.gather(out["_user"]),
        phase=phase_s.gather(out["_phase"]),
        error=err_col,
    )
    if dropped_fraction or cancelled_fraction:
        u = _uniform(pl.col("_i").cast(pl.UInt64), seed, 7)
        dropped, cancelled = u < dropped_fraction, u >= 1.0 - cancelled_fraction
        tester = dropped | cancelled
        out = out.with_columns(
            t_end=pl.when(dropped).then(pl.col("t_start")).otherwise(pl.col("t_end")),
            status=pl.when(tester).then(pl.lit(0, dtype=pl.Int16)).otherwise(pl.col("status")),
            error=pl.when(dropped)
            .then(pl.lit("dropped"))
            .when(cancelled)
            .then(pl.lit("cancelled"))
            .otherwise(pl.col("error").cast(pl.String)),
            task_id=pl.when(tester).then(None).otherwise(pl.col("task_id")),
            bytes_in=pl.when(tester).then(0).otherwise(pl.col("bytes_in")),
        )
    return with_schema_columns(out, HTTP_SCHEMA).select(pl.col(c).cast(t) for c, t in HTTP_SCHEMA.items())


def synthetic_ws_events(
    tasks: int = 1_000,
    *,
    seed: int = 0,
    connections: int = 50,
    users: int = 20,
    duration_s: float = 60.0,
    task_types: Sequence[str] = ("generate-pdf", "compress-video", "resize-image"),
    completion_s: tuple[float, float] = (1.0, 0.5),
    never_completed_fraction: float = 0.05,
    failed_fraction: float = 0.02,
    drops: int = 2,
    isolation: int = 0,
    lost_subscriptions: int = 0,
) -> pl.DataFrame:
    """A seeded synthetic WebSocket run with exactly ``WS_SCHEMA``.

    ``connections`` connect rows at the start; each of ``tasks`` tasks gets a subscribe row and a
    ``processing`` message (~0.3 s after creation), then a ``completed`` (or, for
    ``failed_fraction``, ``failed``) message after a log-normal time with median
    ``completion_s[0]`` seconds and sigma ``completion_s[1]``; ``never_completed_fraction`` of
    the tasks get no final message. ``drops`` connections are dropped (close row, error
    "dropped") half-way and reconnect; ``isolation`` isolation rows and ``lost_subscriptions``
    error rows are added.
    """
    if tasks < 0 or connections < 0:
        raise ValueError("tasks and connections must be >= 0")
    dur_ns = int(duration_s * 1e9)
    user_names = pl.Series([f"loadtest{i}@example.com" for i in range(users)], dtype=pl.Categorical)
    tt = pl.Series(list(task_types), dtype=pl.Categorical)
    frames: list[pl.DataFrame] = []

    conn = pl.DataFrame({"conn": pl.int_range(0, connections, dtype=pl.UInt32, eager=True)})
    ci = pl.col("conn").cast(pl.UInt64)
    conn = conn.with_columns(
        t=(pl.col("conn").cast(pl.Int64) * 5_000_000),
        handshake_ns=(1_000_000 * (0.3 * _normal(ci, seed, 40)).exp()).cast(pl.Int64),
        _user=(pl.col("conn") % users).cast(pl.UInt32),
    ).with_columns(user=pl.lit(user_names).gather(pl.col("_user")), kind=pl.lit("connect"))
    frames.append(conn.drop("_user"))
    n_drop = min(drops, connections)
    if n_drop:
        d = conn.head(n_drop).select(
            "conn", "user", t=pl.lit(dur_ns // 2, dtype=pl.Int64) + pl.col("conn").cast(pl.Int64)
        )
        frames.append(d.with_columns(kind=pl.lit("close"), code=pl.lit(1006), error=pl.lit("dropped")))
        frames.append(d.with_columns(kind=pl.lit("reconnect"), t=pl.col("t") + 100_000_000))
        frames.append(
            d.with_columns(kind=pl.lit("connect"), t=pl.col("t") + 150_000_000, handshake_ns=1_000_000)
        )

    if tasks:
        tk = pl.DataFrame({"_i": pl.int_range(0, tasks, dtype=pl.UInt64, eager=True)})
        i = pl.col("_i")
        tk = tk.with_columns(
            task_id=pl.format("task-{}-{}", pl.lit(seed), i),
            _created=(_uniform(i, seed, 10) * dur_ns * 0.8).cast(pl.Int64) + 1_000_000_000,
            _type=(_uniform(i, seed, 11) * len(task_types)).cast(pl.UInt32),
            _conn=(i % max(connections, 1)).cast(pl.UInt32),
            _proc=(300e6 * (0.3 * _normal(i, seed, 12)).exp()).cast(pl.Int64),
            _done=(completion_s[0] * 1e9 * (completion_s[1] * _normal(i, seed, 14)).exp()).cast(pl.Int64),
            _u_fin=_uniform(i, seed, 16),
        ).with_columns(
            task_type=pl.lit(tt).gather(pl.col("_type")),
            conn=pl.col("_conn"),
            user=pl.lit(user_names).gather((pl.col("_conn") % users).cast(pl.UInt32)),
        )
        sub_delay = 20_000_000
        frames.append(
            tk.select(
                "task_id",
                "task_type",
                "conn",
                "user",
                t=pl.col("_created") + sub_delay,
                kind=pl.lit("subscribe"),
            )
        )
        frames.append(
            tk.select(
                "task_id",
                "task_type",
                "conn",
                "user",
                t=pl.col("_created") + pl.col("_proc"),
                kind=pl.lit("message"),
                status=pl.lit("processing"),
                progress=pl.lit(0.1),
                since_created_ns=pl.col("_proc"),
                since_subscribe_ns=pl.col("_proc") - sub_delay,
            )
        )
        fin = tk.filter(pl.col("_u_fin") >= never_completed_fraction)
        total = pl.col("_proc") + pl.col("_done")
        frames.append(
            fin.select(
                "task_id",
                "task_type",
                "conn",
                "user",
                t=pl.col("_created") + total,
                kind=pl.lit("message"),
                status=pl.when(pl.col("_u_fin") < never_completed_fraction + failed_fraction)
                .then(pl.lit("failed"))
                .otherwise(pl.lit("completed")),
                progress=pl.lit(1.0),
                since_created_ns=total,
                since_subscribe_ns=total - sub_delay,
            )
        )
    if isolation:
        frames.append(
            pl.DataFrame(
                {
                    "t": [dur_ns // 3 + k for k in range(isolation)],
                    "kind": ["isolation"] * isolation,
                    "conn": [0] * isolation,
                    "task_id": [f"foreign-{k}" for k in range(isolation)],
                }
            )
        )
    if lost_subscriptions:
        # As the engine records them: a resubscribe, then the gateway's at-once answer confirming
        # the loss (an error row with error "lost_subscription").
        n = lost_subscriptions
        frames.append(
            pl.DataFrame(
                {
                    "t": [dur_ns // 4 + k for k in range(n)] + [dur_ns // 4 + k + 1 for k in range(n)],
                    "kind": ["resubscribe"] * n + ["error"] * n,
                    "conn": [1] * (2 * n),
                    "task_id": [f"lost-{k}" for k in range(n)] * 2,
                    "error": [None] * n + ["lost_subscription"] * n,
                }
            )
        )
    out = pl.concat(
        [
            f.select(
                (pl.col(c) if c in f.columns else pl.lit(None)).cast(t).alias(c) for c, t in WS_SCHEMA.items()
            )
            for f in frames
        ],
        how="vertical",
    )
    return out.with_columns(
        phase=pl.lit("peak", dtype=pl.Categorical), worker=pl.lit(0, dtype=pl.UInt16)
    ).sort("t")
