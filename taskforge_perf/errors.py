"""The project's exception tree.

    TaskforgePerfError
     +-- ConfigError        bad input: the message names the field and the fix
     +-- TargetError        the target cannot be used (unreachable at setup, no users could log in)
     +-- RunError           a run could not be carried out (e.g. started twice at once)

Failures of the system under test during a run are never raised: they become rows with an error
kind (see ``schema.ERROR_KINDS``).
"""

from __future__ import annotations


class TaskforgePerfError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(TaskforgePerfError, ValueError):
    """A configuration value is invalid; the message names the field and how to fix it."""


class TargetError(TaskforgePerfError):
    """The target cannot be used for a run (unreachable at setup, authentication impossible)."""


class RunError(TaskforgePerfError):
    """A run could not be carried out as asked."""
