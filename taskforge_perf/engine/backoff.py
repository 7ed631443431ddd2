"""Back-off of re-authentication when logins fail: per user and pool-wide (a circuit breaker).

Without it a tester whose logins fail logs in once per request (~85-90 logins/s measured against
the reference target), which against a bcrypt-hashing target is the tester overloading it.
The numbers (seconds):

- per user, after ``n`` consecutive failed renewals (refresh, then login) the next attempt waits
  ``min(CAP, BASE * 2 ** (n - 1)) * uniform(0.5, 1.0)``: 0.25-0.5, 0.5-1, 1-2, 2-4, 4-8, 8-16,
  15-30, then 15-30 every time ("equal jitter": spread out, never below half the step);
- pool-wide, a circuit breaker watches the last ``WINDOW`` renewal outcomes: when at least
  ``min(MIN_SAMPLES, pool size)`` are in and more than half failed it opens, and no renewal is
  tried for ``COOL_DOWN`` s; then it half-opens and lets one probe through: a success closes it
  (and forgets the window), a failure opens it again for twice as long (at most ``MAX_COOL_DOWN``).

Pure logic on an injected clock (monotonic seconds): no I/O, no sleeping.
"""

from __future__ import annotations

import collections
import random

BASE = 0.5
CAP = 30.0
WINDOW = 20
MIN_SAMPLES = 5
COOL_DOWN = 5.0
MAX_COOL_DOWN = 60.0
#: While the breaker's probe is in flight, other callers are told to come back this much later.
PROBE_WAIT = 0.5


def backoff_delay(failures: int, rng: random.Random) -> float:
    """Seconds before the next renewal of a user after ``failures`` consecutive failures.

    >>> 0.25 <= backoff_delay(1, random.Random(1)) <= 0.5
    True
    """
    if failures <= 0:
        return 0.0
    step = min(CAP, BASE * 2.0 ** min(failures - 1, 32))
    return step * (0.5 + 0.5 * rng.random())


class CircuitBreaker:
    """Pool-wide breaker over renewal outcomes: closed -> open -> half-open -> closed/open.

    >>> b = CircuitBreaker(pool_size=2)
    >>> b.record(False, 0.0); b.record(False, 0.0); b.allow(1.0), b.allow(5.0), b.allow(5.0)
    (False, True, False)
    """

    def __init__(self, pool_size: int) -> None:
        self.min_samples = max(1, min(MIN_SAMPLES, pool_size))
        self.window: collections.deque[bool] = collections.deque(maxlen=WINDOW)
        self.state = "closed"
        self.open_until = 0.0
        self.cool_down = COOL_DOWN
        #: How many times it opened (meta, warnings).
        self.opened = 0
        #: Renewals it refused while open or half-open.
        self.refused = 0

    def allow(self, now: float) -> bool:
        """May a renewal be tried now? In half-open, only the first caller (the probe) may."""
        if self.state == "closed":
            return True
        if self.state == "open" and now >= self.open_until:
            self.state = "half-open"
            return True
        self.refused += 1
        return False

    def retry_in(self, now: float) -> float:
        """Seconds until the breaker lets a renewal through again (0.0 when closed)."""
        if self.state == "open":
            return max(self.open_until - now, 0.0)
        if self.state == "half-open":
            return PROBE_WAIT
        return 0.0

    def record(self, ok: bool, now: float) -> None:
        """Count one renewal outcome; open, close or re-open as described in the module."""
        if self.state == "half-open":
            if ok:
                self.state = "closed"
                self.window.clear()
                self.cool_down = COOL_DOWN
            else:
                self.cool_down = min(self.cool_down * 2.0, MAX_COOL_DOWN)
                self._open(now)
            return
        if self.state == "open":  # a renewal that started before it opened
            return
        self.window.append(ok)
        n = len(self.window)
        if n >= self.min_samples and self.window.count(False) * 2 > n:
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = "open"
        self.open_until = now + self.cool_down
        self.opened += 1
