"""A running latency histogram for the in-run abort watch: cost per update proportional to the
new values, memory fixed. Pure.

Exact percentiles need every value at hand (a selection over all rows: O(rows) per check, 101 ms
per check at 1M rows). The watch only has to notice a breach, so it keeps log-spaced buckets
``BUCKET_RATIO`` wide from 1 µs up: a percentile read from them interpolates like polars'
``linear`` between two order statistics, each within ±0.5 % (half a bucket); ``max``/``mean``/
counts stay exact. The final evaluation
after the run (``threshold_eval.evaluate``) is exact.

>>> import polars as pl
>>> h = LatencyHistogram()
>>> h.add(pl.Series([1.0, 2.0, 3.0, 4.0, 100.0]))
>>> round(h.quantile(0.5), 1), h.max, h.n
(3.0, 100.0, 5)
"""

from __future__ import annotations

import math

import polars as pl

#: Ratio of a bucket's upper to its lower edge: a percentile is within ±0.5 % (half a bucket).
BUCKET_RATIO = 1.01
#: Values below this (ms) share the first bucket and read as 0.
FLOOR_MS = 1e-3
_LOG = math.log(BUCKET_RATIO)
#: Buckets from 1 µs to ~3 hours; longer values land in the last one (max stays exact).
_BUCKETS = int(math.log(1e7 / FLOOR_MS) / _LOG) + 2


class LatencyHistogram:
    """Counts of values (ms) in log-spaced buckets, with the exact count, sum and max."""

    __slots__ = ("counts", "n", "total", "max")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.n = 0
        self.total = 0.0
        self.max: float | None = None

    def add(self, ms: pl.Series) -> None:
        """Add values (ms): one vectorised bucketing, then one update per distinct bucket."""
        ms = ms.drop_nulls()
        if ms.len() == 0:
            return
        v = pl.col("ms")
        idx = (
            pl.when(v < FLOOR_MS)
            .then(0)
            .otherwise(((v / FLOOR_MS).log() / _LOG).floor().cast(pl.Int64) + 1)
            .clip(0, _BUCKETS - 1)
        )
        frame = pl.DataFrame({"ms": ms}).select(idx.alias("b"))
        counts = self.counts
        for b, c in frame["b"].value_counts().iter_rows():
            counts[b] += c
        self.n += ms.len()
        self.total += float(ms.sum())
        top = float(ms.max())  # type: ignore[arg-type]
        self.max = top if self.max is None else max(self.max, top)

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1) with polars' linear interpolation between the two order
        statistics around it, each read as its bucket's geometric middle (within half a bucket)."""
        if self.n == 0:
            return None
        pos = q * (self.n - 1)
        lo = int(pos)
        frac = pos - lo
        v_lo = self._at(lo)
        if frac == 0 or lo + 1 >= self.n:
            return v_lo
        return v_lo + frac * (self._at(lo + 1) - v_lo)

    def _at(self, rank: int) -> float:
        """The value of the order statistic ``rank`` (0-based), to half a bucket."""
        seen = 0
        for b, c in enumerate(self.counts):
            seen += c
            if seen > rank:
                if b == 0:
                    return 0.0
                mid = FLOOR_MS * BUCKET_RATIO ** (b - 1 + 0.5)
                return min(mid, self.max) if self.max is not None else mid
        return self.max or 0.0

    def mean(self) -> float | None:
        """The exact mean, or None."""
        return self.total / self.n if self.n else None
