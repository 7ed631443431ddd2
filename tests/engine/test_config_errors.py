"""Bad input gets one clear error naming the field and the fix (no network)."""

from __future__ import annotations

import random

import pytest

import taskforge_perf as tfp
from taskforge_perf.mix import Endpoint


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("127.0.0.1:3000", "Target.base_url must start with http:// or https://"),
        ("ftp://127.0.0.1", "Target.base_url must start with"),
        ("http://", "Target.base_url has no host"),
        ("http://127.0.0.1:99999", "invalid port"),
        ("", "Target.base_url must be a URL string"),
    ],
)
def test_bad_url_names_the_field(url: str, needle: str) -> None:
    with pytest.raises(tfp.ConfigError, match=needle.replace("/", "/")):
        tfp.Target(url)


def test_bad_ws_url() -> None:
    with pytest.raises(tfp.ConfigError, match="Target.ws_url must start with ws:// or wss://"):
        tfp.Target("http://127.0.0.1:1", "http://127.0.0.1:2")


def test_empty_mix() -> None:
    with pytest.raises(tfp.ConfigError, match="at least one Endpoint"):
        tfp.RequestMix([])


def test_negative_weight_names_endpoint_and_fix() -> None:
    with pytest.raises(tfp.ConfigError, match=r"Endpoint 'GET /x': weight must be a finite number >= 0 .*-1"):
        Endpoint("GET /x", "GET", "/x", weight=-1)


def test_all_zero_weights() -> None:
    with pytest.raises(tfp.ConfigError, match="weights sum to 0"):
        tfp.RequestMix([Endpoint("GET /x", "GET", "/x", weight=0)])


def test_zero_users() -> None:
    with pytest.raises(tfp.ConfigError, match=r"UserPool.count must be an integer >= 1 \(got 0\)"):
        tfp.UserPool(count=0)


def test_run_needs_a_load_shape() -> None:
    tester = tfp.LoadTester("http://127.0.0.1:9", tfp.UserPool(count=1))
    with pytest.raises(tfp.ConfigError, match="concurrency= .* or rate="):
        tester.run_sync(duration=1)


def test_target_target_type() -> None:
    with pytest.raises(tfp.ConfigError, match="target must be a Target"):
        tfp.LoadTester(42, tfp.UserPool(count=1))


def test_repr_hides_secrets() -> None:
    pool = tfp.UserPool(count=2, password="s3cret-pass")
    pool[0].set_tokens("aaa.bbb.ccc", "refresh-secret", 60)
    text = repr(pool) + repr(list(pool)) + repr(pool.to_dict())
    assert "s3cret-pass" not in text and "refresh-secret" not in text and "aaa.bbb" not in text
    assert repr(tfp.UserSpec(email="a@b.c", password="pw-xyz")).count("pw-xyz") == 0


def test_mix_proportions_follow_weights() -> None:
    mix = tfp.RequestMix.taskforge()
    rng = random.Random(3)
    n = 50_000
    counts: dict[str, int] = {}
    for _ in range(n):
        e = mix.pick(rng)
        counts[e.name] = counts.get(e.name, 0) + 1
    for name, share in mix.shares().items():
        sd = (n * share * (1 - share)) ** 0.5
        assert abs(counts[name] - n * share) < 5 * sd, (name, counts[name], n * share)


def test_taskforge_payloads_are_in_range() -> None:
    mix = tfp.RequestMix.taskforge()
    rng = random.Random(1)
    import json

    for ep in mix.endpoints:
        body = ep.body("u@example.com", "tok", rng)
        if ep.task_type == "resize-image":
            p = json.loads(body)["payload"]
            assert 200 <= p["width"] <= 1200 and 150 <= p["height"] <= 900
        if ep.task_type == "compress-video":
            p = json.loads(body)["payload"]
            assert p["format"] == "mp4" and 500 <= int(p["bitrate"][:-1]) <= 2000
            assert p["preset"] in {"fast", "medium", "slow", "veryfast", "slower"}
