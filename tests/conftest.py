"""Suite-wide settings: runs stream to a temporary run store, never to the repository's data/runs;
under pytest-xdist, a test marked ``exclusive`` runs while the other workers wait."""

from __future__ import annotations

import fcntl
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "exclusive: measures the machine (RSS slope, ...): no other test runs meanwhile under xdist",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The engine's tests hold the generator to its schedule (open-model arrivals are dropped when
    the loop reaches them > 2 ms after the plan's end, WebSocket timelines within bounds): another
    worker's load beside them (a kernel starting) made them fail, so they run as they did serially."""
    engine = Path(__file__).resolve().parent / "engine"
    for item in items:
        if item.path.parent == engine:
            item.add_marker(pytest.mark.exclusive)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Under xdist, every test holds a shared lock of the session (setup, call and teardown, module
    fixtures included) and an ``exclusive`` test an exclusive one, taken before pytest-timeout's
    timer starts. A turnstile gives the exclusive test priority: once it waits, no new test starts;
    it waits only for the tests already running. Serial runs take no lock."""
    worker_tmp = getattr(item.config, "workerinput", None) and item.config.option.basetemp
    if not worker_tmp:
        return (yield)
    root = Path(worker_tmp).parent  # the controller's basetemp, shared by this session's workers
    mode = fcntl.LOCK_EX if item.get_closest_marker("exclusive") else fcntl.LOCK_SH
    with open(root / "exclusive.turnstile", "a") as gate, open(root / "exclusive.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, mode)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            return (yield)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
