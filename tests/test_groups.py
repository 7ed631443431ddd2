"""User groups and think-time distributions (issue 18 item 1)."""

from __future__ import annotations

import math
import random

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.groups import GroupPicker
from taskforge_perf.mix import Endpoint, RequestMix

FAST = {"hash_iterations": 1000}
HEALTH = RequestMix([Endpoint("GET /health", "GET", "/health", auth=False)])
METRICS = RequestMix([Endpoint("GET /metrics", "GET", "/metrics", auth=False)])


def ks_statistic(sample: list[float], cdf: object) -> float:
    """Kolmogorov-Smirnov D = sup |F_n(x) - F(x)| of a sample against a continuous CDF."""
    xs = sorted(sample)
    n = len(xs)
    f = cdf  # type: ignore[assignment]
    return max(max((i + 1) / n - f(x), f(x) - i / n) for i, x in enumerate(xs))  # type: ignore[operator]


def test_picker_shares_match_weights_over_10k_picks() -> None:
    picker = GroupPicker([3, 1, 6])
    rng = random.Random(7)
    counts = [0, 0, 0]
    for _ in range(10_000):
        counts[picker.pick(rng)] += 1
    for got, want in zip(counts, (0.3, 0.1, 0.6), strict=True):
        assert abs(got / 10_000 - want) < 0.02, counts
    # closed model: virtual users interleaved so every prefix keeps the shares (within one user)
    for level in (1, 7, 10, 33, 100):
        owned = [picker.for_index(i) for i in range(level)]
        for g, share in enumerate((0.3, 0.1, 0.6)):
            assert abs(owned.count(g) - share * level) <= 1, (level, owned)


@pytest.mark.parametrize(
    ("think", "cdf"),
    [
        (tfp.ThinkTime.exponential(0.5), lambda x: 1 - math.exp(-x / 0.5)),
        (tfp.ThinkTime.uniform(0.1, 0.3), lambda x: min(max((x - 0.1) / 0.2, 0.0), 1.0)),
    ],
    ids=["exponential", "uniform"],
)
def test_think_time_distributions_pass_a_ks_test(think: tfp.ThinkTime, cdf: object) -> None:
    rng = random.Random(42)
    sample = [think.sample(rng) for _ in range(4000)]
    d = ks_statistic(sample, cdf)
    assert d < 1.63 / math.sqrt(len(sample)), d  # the 1% critical value
    # ... and a wrong distribution is rejected by the same test (the test has power)
    assert ks_statistic(sample, lambda x: 1 - math.exp(-x / 0.8)) > 1.63 / math.sqrt(len(sample))


def test_think_time_constant_callable_and_repr() -> None:
    assert tfp.ThinkTime.constant(0.2).sample(random.Random(1)) == 0.2
    assert tfp.ThinkTime.of(lambda r: -1.0).sample(random.Random(1)) == 0.0
    assert repr(tfp.ThinkTime.exponential(0.5)) == "ThinkTime.exponential(mean=0.5)"


def test_group_config_errors_name_the_field() -> None:
    with pytest.raises(tfp.ConfigError, match="weight"):
        tfp.UserGroup(name="a", users=2, weight=0)
    with pytest.raises(tfp.ConfigError, match="think_time"):
        tfp.UserGroup(name="a", users=2, think_time="slow")  # type: ignore[arg-type]
    with pytest.raises(tfp.ConfigError, match="users"):
        tfp.UserGroup(name="a", users=0)
    with pytest.raises(tfp.ConfigError, match="high"):
        tfp.ThinkTime.uniform(2, 1)
    a, b = (
        tfp.UserGroup(name="a", users=2),
        tfp.UserGroup(name="b", users=tfp.UserPool(2, email_prefix="loada")),
    )
    with pytest.raises(tfp.ConfigError, match="share the user"):
        tfp.LoadTester(tfp.Target("http://127.0.0.1:9"), groups=[a, b])
    with pytest.raises(tfp.ConfigError, match="not both"):
        tfp.LoadTester(tfp.Target("http://127.0.0.1:9"), tfp.UserPool(2), groups=[a])
    with pytest.raises(tfp.ConfigError, match="unique"):
        tfp.LoadTester(tfp.Target("http://127.0.0.1:9"), groups=[a, tfp.UserGroup(name="a", users=1)])


@pytest.mark.timeout(60)
async def test_open_model_groups_shares_and_group_column() -> None:
    groups = [
        tfp.UserGroup(name="light", users=2, mix=HEALTH, weight=1),
        tfp.UserGroup(name="heavy", users=3, mix=METRICS, weight=3),
    ]
    async with tfp.ReferenceTarget(seed=1, **FAST) as target:
        tester = tfp.LoadTester(target, groups=groups, seed=3, live=False)
        run = await tester.run(duration=2, rate=1000)
    load = run.load_events()
    assert load.height >= 1900
    assert load["group"].null_count() == 0
    # each group's rows are its own mix and its own users
    for name, ep, prefix in (("light", "GET /health", "loadlight"), ("heavy", "GET /metrics", "loadheavy")):
        rows = load.filter(pl.col("group") == name)
        assert rows["endpoint"].cast(pl.String).unique().to_list() == [ep]
        assert rows["user"].cast(pl.String).str.starts_with(prefix).all()
    shares = dict(run.by_group().select("group", "count").iter_rows())
    total = sum(shares.values())
    assert abs(shares["heavy"] / total - 0.75) < 0.02, shares
    assert run.meta["groups"][1]["weight"] == 3
    assert run.charts.groups() is not None
    # the set-up's login rows carry the group too
    setup = run.events.filter(
        pl.col("phase") == "setup", pl.col("endpoint").cast(pl.String).str.contains("auth")
    )
    assert set(setup["group"].cast(pl.String).unique()) == {"light", "heavy"}


@pytest.mark.timeout(60)
async def test_closed_model_groups_use_their_think_time() -> None:
    groups = [
        tfp.UserGroup(name="busy", users=2, mix=HEALTH, weight=1),
        tfp.UserGroup(name="idle", users=2, mix=HEALTH, weight=1, think_time=0.25),
    ]
    async with tfp.ReferenceTarget(seed=1, **FAST) as target:
        run = await tfp.LoadTester(target, groups=groups, seed=3, live=False).run(duration=2, concurrency=4)
    counts = dict(run.by_group().select("group", "count").iter_rows())
    # 2 idle users, each at most one request per 0.25 s think (+1 at the start): <= 2 * (2 / 0.25 + 1)
    assert counts["idle"] <= 18, counts
    assert counts["busy"] > 5 * counts["idle"], counts


def test_runs_saved_before_the_group_and_session_columns_load_with_nulls(tmp_path: object) -> None:
    from pathlib import Path

    from taskforge_perf.synthetic import synthetic_events

    folder = Path(str(tmp_path)) / "old"
    run = tfp.Run(synthetic_events(50, seed=1), None, {"name": "old"})
    run.save(folder)
    old = pl.read_parquet(folder / "events.parquet").drop("group", "session")
    old.write_parquet(folder / "events.parquet")
    for lazy in (True, False):
        loaded = tfp.load_run(folder, lazy=lazy)
        ev = loaded.events
        assert ev["group"].null_count() == ev["session"].null_count() == 50
        assert loaded.by_group()["count"].to_list() == [50]
