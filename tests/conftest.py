"""Suite-wide settings: runs stream to a temporary run store, never to the repository's data/runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Without pytest-xdist (not installed, or ``-p no:xdist``), accept the ``-n``/``--dist`` of
    pyproject's addopts and run serially, instead of failing on an unknown option."""
    if pluginmanager.has_plugin("xdist"):
        return
    group = parser.getgroup("xdist", "accepted and ignored: pytest-xdist is not active")
    group._addoption("-n", "--numprocesses", dest="numprocesses", default=None, help="ignored")
    group.addoption("--dist", dest="dist", default="no", help="ignored")


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
