"""taskforge_perf: load-test TaskForge-style HTTP + WebSocket systems and analyse runs in Jupyter."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
