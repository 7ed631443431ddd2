"""The public surface: exactly the intended names, importable without side effects."""

from __future__ import annotations

import subprocess
import sys

import taskforge_perf as tfp

EXPECTED = {
    "Region",
    "find_capacity",
    "UserGroup",
    "ThinkTime",
    "Sessions",
    "Session",
    "CapacityResult",
    "Comparison",
    "ConfigError",
    "DaskRunner",
    "Endpoint",
    "LoadTester",
    "Phase",
    "PlanError",
    "ReferenceTarget",
    "RequestMix",
    "Run",
    "RunError",
    "Snapshot",
    "StressPlan",
    "Target",
    "TargetConfig",
    "TargetError",
    "TaskforgePerfError",
    "Threshold",
    "UserPool",
    "UserSpec",
    "Verdict",
    "WsOptions",
    "__version__",
    "compare",
    "compare_interleaved",
    "compare_series",
    "display_table",
    "load_run",
    "report",
    "run_interleaved",
    "runs",
    "setup_notebook",
    "task_endpoint",
}


def test_all_is_exactly_the_public_names() -> None:
    assert set(tfp.__all__) == EXPECTED
    assert tfp.__all__ == sorted(tfp.__all__)
    for name in tfp.__all__:
        assert hasattr(tfp, name), name


def test_import_has_no_side_effects() -> None:
    code = (
        "import asyncio, signal, threading; before = signal.getsignal(signal.SIGINT); "
        "import taskforge_perf; "
        "assert signal.getsignal(signal.SIGINT) is before; "
        "assert threading.active_count() == 1; "
        "assert type(asyncio.get_event_loop_policy()).__module__.startswith('asyncio')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
