"""Where a run ran: host, CPUs, OS and library versions (``meta["environment"]``).

Taken once per run when its meta is built, so a report read later on another machine still says
what generated the load.
"""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from typing import Any

__all__ = ["run_environment"]

_LIBRARIES = ("taskforge-perf", "aiohttp", "websockets", "polars", "altair", "uvloop")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def run_environment() -> dict[str, Any]:
    """Host name, CPU count (and the CPUs this process may use), OS, Python and library versions."""
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "libraries": {n: v for n in _LIBRARIES if (v := _version(n)) is not None},
    }
