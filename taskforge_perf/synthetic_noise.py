"""Noise processes of real load tests, applied to a synthetic run (for the compare calibration).

``with_process(events, process=...)`` multiplies or delays latencies the way a shared machine does:

- ``"iid"``: unchanged (independent requests);
- ``"autocorrelated"``: a machine-wide slow factor ``exp(x(t))`` where ``x`` is an
  Ornstein-Uhlenbeck process of standard deviation ``sd`` and correlation time ``corr_s``;
- ``"gc"``: stop-the-world pauses (Poisson, ``gc_rate`` per second, exponential durations of mean
  ``gc_ms``): a request starting inside a pause waits for its end;
- ``"run_effect"``: one factor ``exp(N(0, run_sd))`` for the whole run (run-to-run variation).

The frame keeps ``HTTP_SCHEMA`` exactly; only ``t_end`` moves.

>>> from taskforge_perf.synthetic import synthetic_events
>>> ev = with_process(synthetic_events(1_000, seed=1), process="autocorrelated", seed=3)
>>> ev.height
1000
"""

from __future__ import annotations

import math
import random

import polars as pl

__all__ = ["PROCESSES", "with_process"]

PROCESSES = ("iid", "autocorrelated", "gc", "run_effect")


def with_process(
    events: pl.DataFrame,
    *,
    process: str,
    seed: int = 0,
    corr_s: float = 2.0,
    sd: float = 0.15,
    gc_rate: float = 0.5,
    gc_ms: float = 20.0,
    run_sd: float = 0.05,
) -> pl.DataFrame:
    """``events`` with the latencies of ``process`` (see the module docstring)."""
    if process not in PROCESSES:
        raise ValueError(f"process must be one of {PROCESSES} (got {process!r})")
    if process == "iid" or events.is_empty():
        return events
    rng = random.Random(seed * 7_919 + PROCESSES.index(process))
    lat = pl.col("t_end") - pl.col("t_start")
    if process == "run_effect":
        f = math.exp(rng.gauss(0.0, run_sd))
        return events.with_columns(t_end=pl.col("t_start") + (lat.cast(pl.Float64) * f).cast(pl.Int64))
    span = int(events.select(pl.col("t_start").max()).item() or 0) + 1
    if process == "autocorrelated":
        dt = 0.05e9
        k = int(span / dt) + 2
        rho = math.exp(-dt / (corr_s * 1e9))
        step = sd * math.sqrt(1 - rho * rho)
        x, xs = rng.gauss(0.0, sd), []
        for _ in range(k):
            xs.append(math.exp(x))
            x = rho * x + step * rng.gauss(0.0, 1.0)
        factor = pl.lit(pl.Series(xs, dtype=pl.Float64)).gather((pl.col("t_start") // int(dt)).clip(0, k - 1))
        return events.with_columns(t_end=pl.col("t_start") + (lat.cast(pl.Float64) * factor).cast(pl.Int64))
    # gc: pauses [s, s + d); a request starting inside one waits for its end.
    starts, ends, t = [], [], 0.0
    while True:
        t += rng.expovariate(gc_rate) * 1e9
        if t >= span:
            break
        starts.append(int(t))
        ends.append(int(t + rng.expovariate(1.0 / gc_ms) * 1e6))
    if not starts:
        return events
    s = pl.Series(starts, dtype=pl.Int64)
    idx = (s.search_sorted(events["t_start"], side="right").cast(pl.Int64) - 1).clip(lower_bound=0)
    end_of = pl.Series(ends, dtype=pl.Int64).gather(idx)
    start_of = s.gather(idx)
    ts = events["t_start"]
    wait = ((end_of - ts).clip(lower_bound=0) * (ts >= start_of).cast(pl.Int64)).alias("_w")
    return events.with_columns(t_end=pl.col("t_end") + wait)
