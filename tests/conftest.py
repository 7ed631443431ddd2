"""Suite-wide settings: runs stream to a temporary run store, never to the repository's data/runs;
under pytest-xdist, a test marked ``exclusive`` runs while the other workers wait."""

from __future__ import annotations

import fcntl
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "exclusive: measures the machine (RSS slope, ...): no other test runs meanwhile under xdist",
    )


#: Engine test files that share the machine: their tests check counts, rows, error kinds and
#: messages, not the generator's timing; the tests in them that do are marked ``exclusive`` one by
#: one. Every other file under tests/engine (a new one too) runs exclusive as a whole.
SHARED_ENGINE_FILES = frozenset(
    {
        "test_auth_failures.py",
        "test_big_bodies.py",
        "test_client_errors.py",
        "test_config_errors.py",
        "test_fastpath.py",
        "test_health_prepare.py",
        "test_interrupt.py",
        "test_load.py",
        "test_monitor_endpoints.py",
        "test_prometheus.py",
        "test_recorder.py",
        "test_recorder_rows.py",
        "test_secrets.py",
        "test_ws.py",
        "test_ws_lost.py",
        "test_ws_socket.py",
        "test_ws_truth.py",
    }
)


#: The slowest files without exclusive tests (tens of seconds each, mostly waiting on servers
#: and kernels), scheduled first among those: see ``pytest_collection_modifyitems``.
SLOW_FIRST = (
    "test_notebooks.py",
    "test_capacity.py",
    "test_load.py",
    "test_report.py",
    "test_error_samples.py",
    "test_target_acceptance_ws.py",
    "test_auth_failures.py",
    "test_cli_runs.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The engine's tests that hold the generator to its schedule (open-model arrivals are dropped
    when the loop reaches them > 2 ms after the plan's end, WebSocket timelines within bounds,
    phase boundaries, lateness, saturation verdicts): another worker's load beside them (a kernel
    starting) made them fail, so they run as they did serially. So does test_cli_scale (Ctrl-C of
    a 2-process run: a shard ended without its result, twice). The files of SHARED_ENGINE_FILES
    run beside other tests (they passed beside a CPU hog on both cores)."""
    here = Path(__file__).resolve().parent
    for item in items:
        engine = item.path.parent == here / "engine" and item.path.name not in SHARED_ENGINE_FILES
        if engine or item.path == here / "test_cli_scale.py":
            item.add_marker(pytest.mark.exclusive)
    # Order (tests do not depend on it): files whose tests are all exclusive first, then files
    # with some exclusive tests (those first within the file), then the other files, the slowest
    # first. Each switch from shared tests to an exclusive one leaves a worker idle until the other
    # worker's running test ends (up to the length of a notebook): grouped at the start, the
    # exclusive tests cost few switches, and the slow shared files, started early, no longer keep
    # one worker busy alone at the end.
    first: dict[Path, int] = {}
    some: set[Path] = set()
    every: dict[Path, bool] = {}
    for i, item in enumerate(items):
        first.setdefault(item.path, i)
        if _exclusive(item):
            some.add(item.path)
        every[item.path] = every.get(item.path, True) and _exclusive(item)

    def order(item: pytest.Item) -> tuple[int, int, int, bool]:
        group = 0 if every[item.path] else 1 if item.path in some else 2
        rank = SLOW_FIRST.index(item.path.name) if item.path.name in SLOW_FIRST else len(SLOW_FIRST)
        return (group, rank, first[item.path], not _exclusive(item))

    items.sort(key=order)


_FILES = pytest.StashKey[tuple[IO[str], IO[str]]]()
_held: list[int] = []  # this worker's lock mode while it holds the session lock (under xdist)


def _lock_files(item: pytest.Item) -> tuple[IO[str], IO[str]] | None:
    """The session's turnstile and lock files, opened once per xdist worker; None when serial."""
    files = item.config.stash.get(_FILES, None)
    if files is None and getattr(item.config, "workerinput", None) is not None:
        root = Path(item.config.option.basetemp).parent  # the controller's basetemp: this session's
        files = (open(root / "exclusive.turnstile", "a"), open(root / "exclusive.lock", "a"))
        item.config.stash[_FILES] = files
    return files


def pytest_unconfigure(config: pytest.Config) -> None:
    for f in config.stash.get(_FILES, ()):
        f.close()


def _exclusive(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("exclusive") is not None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Under xdist, every test holds a shared lock of the session (setup, call and teardown, module
    fixtures included) and ``exclusive`` tests an exclusive one, kept from one exclusive test to
    the next on the same worker; taken before pytest-timeout's timer starts. A turnstile gives the
    exclusive lock priority: once it waits, no new test starts; it waits only for the tests
    already running. Serial runs take no lock."""
    files = _lock_files(item)
    if files is None:
        return (yield)
    gate, lock = files
    want = fcntl.LOCK_EX if _exclusive(item) else fcntl.LOCK_SH
    if _held != [want]:
        if _held:
            fcntl.flock(lock, fcntl.LOCK_UN)
            _held.clear()
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, want)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        _held.append(want)
    try:
        return (yield)
    finally:
        # A shared lock is given back after each test (so a waiting exclusive test gets its turn);
        # an exclusive one is kept while the next test on this worker is exclusive too.
        if want == fcntl.LOCK_SH or not _exclusive(nextitem):
            fcntl.flock(lock, fcntl.LOCK_UN)
            _held.clear()


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Without pytest-xdist (not installed, or ``-p no:xdist``), accept the ``-n``/``--dist`` of
    pyproject's addopts and run serially, instead of failing on an unknown option."""
    if pluginmanager.has_plugin("xdist"):
        return
    group = parser.getgroup("xdist", "accepted and ignored: pytest-xdist is not active")
    group._addoption("-n", "--numprocesses", dest="numprocesses", default=None, help="ignored")
    group.addoption("--dist", dest="dist", default="no", help="ignored")
    group.addoption("--no-loadscope-reorder", dest="loadscopereorder", action="store_false", help="ignored")


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
