"""Suite-wide settings: runs stream to a temporary run store, never to the repository's data/runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _run_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``LoadTester``'s default run store (``data/runs``) goes to a temporary folder for the suite
    (subprocesses such as the CLI inherit it through the environment)."""
    import os

    store = tmp_path_factory.mktemp("runs")
    old = os.environ.get("TASKFORGE_PERF_RUNS")
    os.environ["TASKFORGE_PERF_RUNS"] = str(store)
    yield store
    if old is None:
        os.environ.pop("TASKFORGE_PERF_RUNS", None)
    else:
        os.environ["TASKFORGE_PERF_RUNS"] = old
