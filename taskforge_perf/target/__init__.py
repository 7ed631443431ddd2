"""The reference TaskForge target: an aiohttp API + status WebSocket gateway run as a subprocess.

>>> from taskforge_perf.target import ReferenceTarget, TargetConfig
>>> with ReferenceTarget(TargetConfig(seed=1)) as target:   # doctest: +SKIP
...     print(target.base_url)
"""

from __future__ import annotations

from taskforge_perf.target.config import TargetConfig
from taskforge_perf.target.metrics import parse_prometheus
from taskforge_perf.target.process import ReferenceTarget, TargetStartError
from taskforge_perf.target.specs import Delay

__all__ = ["Delay", "ReferenceTarget", "TargetConfig", "TargetStartError", "parse_prometheus"]
