"""taskforge_perf: load-test TaskForge-style HTTP + WebSocket systems and analyse runs in Jupyter.

>>> import taskforge_perf as tfp
>>> tfp.RequestMix.taskforge()  # doctest: +ELLIPSIS
RequestMix(GET /health=10, ...)
"""

from __future__ import annotations

__version__ = "0.1.0"

from taskforge_perf.capacity import CapacityResult, find_capacity
from taskforge_perf.compare import Comparison, Verdict, compare, compare_series
from taskforge_perf.config import Target
from taskforge_perf.engine.dask_runner import DaskRunner
from taskforge_perf.engine.monitor import Snapshot
from taskforge_perf.engine.sessions import Session
from taskforge_perf.engine.tester import LoadTester
from taskforge_perf.engine.ws import WsOptions
from taskforge_perf.errors import ConfigError, RunError, TargetError, TaskforgePerfError
from taskforge_perf.groups import ThinkTime, UserGroup
from taskforge_perf.interleave import compare_interleaved, run_interleaved
from taskforge_perf.mix import Endpoint, RequestMix, task_endpoint
from taskforge_perf.plan import Phase, PlanError, StressPlan
from taskforge_perf.regions import Region
from taskforge_perf.rendering import setup_notebook
from taskforge_perf.report import report  # heavy imports (nbclient, nbconvert) happen on call
from taskforge_perf.results import Run, load_run, runs
from taskforge_perf.sessions import Sessions
from taskforge_perf.tables import display_table
from taskforge_perf.target import ReferenceTarget, TargetConfig
from taskforge_perf.thresholds import Threshold
from taskforge_perf.users import UserPool, UserSpec

__all__ = [
    "CapacityResult",
    "Comparison",
    "ConfigError",
    "DaskRunner",
    "Endpoint",
    "LoadTester",
    "Phase",
    "PlanError",
    "ReferenceTarget",
    "Region",
    "RequestMix",
    "Run",
    "RunError",
    "Session",
    "Sessions",
    "Snapshot",
    "StressPlan",
    "Target",
    "TargetConfig",
    "TargetError",
    "TaskforgePerfError",
    "ThinkTime",
    "Threshold",
    "UserGroup",
    "UserPool",
    "UserSpec",
    "Verdict",
    "WsOptions",
    "__version__",
    "compare",
    "compare_interleaved",
    "compare_series",
    "display_table",
    "find_capacity",
    "load_run",
    "report",
    "run_interleaved",
    "runs",
    "setup_notebook",
    "task_endpoint",
]
