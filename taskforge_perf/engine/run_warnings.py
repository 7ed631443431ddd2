"""What went wrong on the tester's side of a run, for its meta: client errors, Retry-After
answers, auth back-off and partial set-up, each summed up as a warning (issue 12)."""

from __future__ import annotations

import logging
from typing import Any

from taskforge_perf.engine.auth import AuthClient
from taskforge_perf.engine.http import HttpDriver

log = logging.getLogger("taskforge_perf")


def add_fault_meta(meta: dict[str, Any], driver: HttpDriver, auth: AuthClient, ready: int | None) -> None:
    """Add ``client_errors``, ``retry_after``, ``auth`` figures, ``users.ready`` and ``warnings``
    to a run's meta (in place); each warning is also logged once on the ``taskforge_perf`` logger."""
    warnings: list[str] = list(meta.get("warnings") or [])
    meta["client_errors"] = dict(driver.client_errors)
    for name, msg in driver.client_errors.items():
        warnings.append(f"requests of {name!r} could not be built (error 'client' rows): {msg}")
    ra: dict[str, Any] = dict(driver.retry_after)
    ra["asked_s"] = round(ra["asked_s"], 3)
    ra["honored"] = driver.honor_retry_after
    meta["retry_after"] = ra
    meta["pauses"] = {"count": driver.pauses["count"], "seconds": round(driver.pauses["seconds"], 3)}
    if ra["with_header"]:
        how = "closed-model users wait for it" if driver.honor_retry_after else "not honoured"
        warnings.append(
            f"the target asked to slow down: {ra['with_header']} answers 429/503 with Retry-After "
            f"({how}; {ra['asked_s']:.1f} s asked in total)"
        )
    meta.setdefault("auth", {}).update(auth.failure_stats())
    if auth.breaker.opened:
        warnings.append(
            f"logins failed for most users: the auth circuit breaker opened {auth.breaker.opened} "
            "time(s) and held re-authentication back"
        )
    total = len(auth.pool)
    users = dict(meta.get("users") or {})
    users["ready"] = ready if ready is not None else 0
    meta["users"] = users
    if ready is not None and ready < total:
        warnings.append(f"only {ready} of {total} users signed up or logged in at set-up")
    for w in warnings[len(meta.get("warnings") or []) :]:
        log.warning("%s", w)
    meta["warnings"] = warnings
