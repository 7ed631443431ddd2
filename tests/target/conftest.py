"""Fixtures that start the real reference target as a subprocess on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskforge_perf.target import ReferenceTarget


@pytest.fixture(scope="module")
def target() -> Iterator[ReferenceTarget]:
    """One default target shared by a test module."""
    with ReferenceTarget(seed=1, hash_iterations=1000) as t:
        yield t


@pytest.fixture(scope="module")
def quirks_target() -> Iterator[ReferenceTarget]:
    """A ``--real-quirks`` target with a fast outbox, shared by a test module."""
    with ReferenceTarget(
        real_quirks=True,
        seed=2,
        hash_iterations=1000,
        outbox_interval=0.5,
        outbox_batch=3,
        worker_concurrency=8,  # a batch starts at once (the real default is 1 consumer per queue)
        token_check_delay=0.05,
    ) as t:
        yield t


@pytest.fixture(scope="module")
def real() -> Iterator[ReferenceTarget]:
    with ReferenceTarget(real_quirks=True, outbox_time_scale=0.01, hash_iterations=1000, seed=17) as t:
        yield t


@pytest.fixture(scope="module")
def plain() -> Iterator[ReferenceTarget]:
    with ReferenceTarget(hash_iterations=1000, seed=18) as t:
        yield t


@pytest.fixture(params=["real", "plain"])
def any_target(request: pytest.FixtureRequest) -> ReferenceTarget:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]
