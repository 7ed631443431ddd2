"""Small exact helpers for the compare gate: Student t, Wilson/Newcombe intervals, Holm.

Pure Python (no numpy/scipy): the gate evaluates a handful of tests per comparison, so closed
forms and a cached inverse are enough.

>>> round(t_ppf(0.975, 10), 3)
2.228
>>> [round(x, 4) for x in newcombe_diff(48, 80, 56, 70, 1.959964)]
[0.0524, 0.3339]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from statistics import NormalDist

__all__ = ["holm", "newcombe_diff", "newcombe_pvalue", "t_cdf", "t_ppf", "wilson", "z_ppf"]

_N = NormalDist()
#: Above this many degrees of freedom Student's t is treated as normal.
_DF_NORMAL = 1000.0


def z_ppf(p: float) -> float:
    """The standard normal quantile."""
    return _N.inv_cdf(p)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-12:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(ln)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function (normal above 1,000 degrees of freedom)."""
    if math.isnan(t):
        return math.nan
    if df >= _DF_NORMAL or math.isinf(df):
        return _N.cdf(t)
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=4096)
def _t_ppf_cached(p: float, df: float) -> float:
    lo, hi = -1e4, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return (lo + hi) / 2


def t_ppf(p: float, df: float) -> float:
    """Student's t quantile; ``df`` is rounded down to a tenth (conservative) and cached."""
    if df >= _DF_NORMAL or math.isinf(df):
        return _N.inv_cdf(p)
    return _t_ppf_cached(p, max(math.floor(df * 10) / 10, 0.5))


def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` at normal quantile ``z``."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_diff(k1: int, n1: int, k2: int, n2: int, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) of ``k2/n2 - k1/n1``."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p2 - p1
    return d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)


def newcombe_pvalue(k1: int, n1: int, k2: int, n2: int, delta0: float) -> float:
    """One-sided p-value of H0 ``p2 - p1 <= delta0``: the level at which Newcombe's lower bound
    reaches ``delta0`` (found by bisection on the normal quantile)."""
    if k2 / n2 - k1 / n1 <= delta0:
        return 1.0
    lo, hi = 0.0, 40.0
    if newcombe_diff(k1, n1, k2, n2, hi)[0] > delta0:
        return 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if newcombe_diff(k1, n1, k2, n2, mid)[0] > delta0:
            lo = mid
        else:
            hi = mid
    return 1.0 - _N.cdf((lo + hi) / 2)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values (reject where adjusted p < alpha)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
