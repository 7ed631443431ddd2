"""Constructor checks of ``LoadTester``'s plain options: one ``ConfigError`` per field, naming the fix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from taskforge_perf.errors import ConfigError


def check_options(
    seed: Any,
    recent_tasks: Any,
    monitor_interval: Any,
    assignment: Any,
    setup_progress: Any,
    listeners: Any,
    live: Any,
) -> None:
    """Constructor checks of LoadTester's plain options (one message per field and fix)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | str | bytes)):
        raise ConfigError(f"seed must be an integer (or None for a random one) (got {seed!r}); e.g. seed=1")
    if isinstance(recent_tasks, bool) or not isinstance(recent_tasks, int) or recent_tasks < 1:
        raise ConfigError(
            f"recent_tasks must be an integer >= 1: how many recent task ids WebSocket "
            f"subscriptions draw from (got {recent_tasks!r}); the default is 100"
        )
    m = monitor_interval
    if isinstance(m, bool) or not isinstance(m, int | float) or not 0.01 <= m < math.inf:
        raise ConfigError(
            f"monitor_interval must be a finite number of seconds >= 0.01 (got {m!r}); "
            "the default 0.5 s suits the live view"
        )
    if not callable(assignment):
        raise ConfigError(
            "assignment must be a strategy (users, rng) -> picker such as "
            f"taskforge_perf.users.random_assignment (got {assignment!r})"
        )
    if setup_progress is not None and not callable(setup_progress):
        raise ConfigError(f"setup_progress must be a callable (done, total) or None (got {setup_progress!r})")
    if isinstance(listeners, str | bytes) or not isinstance(listeners, Sequence | tuple | list):
        raise ConfigError(f"listeners must be a list of callables (got {type(listeners).__name__})")
    for f in listeners:
        if not callable(f):
            raise ConfigError(f"listeners: each listener must be a callable (Snapshot) -> None (got {f!r})")
    if live is not None and not isinstance(live, bool):
        raise ConfigError(f"live must be True, False or None (automatic) (got {live!r})")
