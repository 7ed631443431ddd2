"""Bad input gets one clear error naming the field and the fix (no network)."""

from __future__ import annotations

import random
from urllib.parse import urlunsplit

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


# --- every public constructor: bad numbers, wrong types, empty strings (issue 12) -------------
INF, NAN = float("inf"), float("nan")
_PH = tfp.Phase("load", 1, rate=1)
_EP = Endpoint("GET /x", "GET", "/x")


def _tester(**kw: object) -> tfp.LoadTester:
    return tfp.LoadTester("http://127.0.0.1:9", tfp.UserPool(count=1), **kw)  # type: ignore[arg-type]


BAD: list[tuple[str, object, str]] = [
    # Target
    ("target-ipv6", lambda: tfp.Target("http://[::1"), r"Target.base_url is not a valid URL.*\[::1\]:3000"),
    ("target-none", lambda: tfp.Target(None), "Target.base_url must be a URL string"),
    ("target-blank", lambda: tfp.Target("   "), "Target.base_url must be a URL string"),
    ("target-query", lambda: tfp.Target("http://127.0.0.1:1/?x=1"), "must not have a query or a fragment"),
    ("target-fragment", lambda: tfp.Target("http://127.0.0.1:1#frag"), "must not have a query or a fragment"),
    (
        "target-ws-query",
        lambda: tfp.Target("http://127.0.0.1:1", "ws://127.0.0.1:2/?a=b"),
        "Target.ws_url must not have a q",
    ),
    (
        "target-creds",
        lambda: tfp.Target(urlunsplit(("http", "u:p@127.0.0.1:1", "", "", ""))),  # credentials, loopback host
        r"base_url carries credentials.*\*\*\*@127\.0\.0\.1:1",
    ),
    (
        "timeout-inf",
        lambda: tfp.Target("http://127.0.0.1:1", request_timeout=INF),
        "request_timeout must be a fini",
    ),
    (
        "timeout-nan",
        lambda: tfp.Target("http://127.0.0.1:1", connect_timeout=NAN),
        "connect_timeout must be a fini",
    ),
    (
        "timeout-neg",
        lambda: tfp.Target("http://127.0.0.1:1", ws_connect_timeout=-1),
        "ws_connect_timeout must be",
    ),
    (
        "timeout-str",
        lambda: tfp.Target("http://127.0.0.1:1", request_timeout="5"),
        "request_timeout must be a fini",
    ),
    (
        "target-version",
        lambda: tfp.Target("http://127.0.0.1:1", version=3),
        "Target.version must be a string",
    ),
    # UserPool
    ("pool-domain-int", lambda: tfp.UserPool(domain=5), r"UserPool.domain must be a domain .*got 5"),
    ("pool-domain-empty", lambda: tfp.UserPool(domain=""), "UserPool.domain must be a domain"),
    ("pool-prefix-int", lambda: tfp.UserPool(email_prefix=3), "UserPool.email_prefix must be non-empty"),
    ("pool-count-float", lambda: tfp.UserPool(count=2.0), "UserPool.count must be an integer"),
    ("pool-count-bool", lambda: tfp.UserPool(count=True), "UserPool.count must be an integer"),
    ("pool-password", lambda: tfp.UserPool(password=""), "UserPool.password must be a non-empty"),
    ("pool-ttl-inf", lambda: tfp.UserPool(token_ttl=INF), "UserPool.token_ttl must be a finite"),
    ("pool-ttl-nan", lambda: tfp.UserPool(token_ttl=NAN), "UserPool.token_ttl must be a finite"),
    ("pool-signup", lambda: tfp.UserPool(signup="yes"), "UserPool.signup must be True or False"),
    ("pool-sc", lambda: tfp.UserPool(signup_concurrency=0), "UserPool.signup_concurrency must be"),
    ("pool-users-str", lambda: tfp.UserPool(users="a@b.c"), "UserPool.users must be a list"),
    ("pool-users-triple", lambda: tfp.UserPool(users=[("a@b.c", "p", 1)]), "an .email, password. pair"),
    ("pool-users-nopw", lambda: tfp.UserPool(users=[("a@b.c", None)]), "password of 'a@b.c' must be"),
    # Endpoint / RequestMix
    ("mix-none", lambda: tfp.RequestMix(None), "RequestMix takes a list of Endpoint objects .got NoneType"),
    ("mix-str", lambda: tfp.RequestMix("GET /x"), "RequestMix takes a list of Endpoint objects .got str"),
    ("mix-item", lambda: tfp.RequestMix([1]), "RequestMix takes Endpoint objects"),
    ("mix-tasks", lambda: tfp.RequestMix.tasks(["generate-pdf"]), "RequestMix.tasks takes a mapping"),
    ("weight-inf", lambda: Endpoint("GET /x", "GET", "/x", weight=INF), "weight must be a finite number"),
    ("weight-nan", lambda: Endpoint("GET /x", "GET", "/x", weight=NAN), "weight must be a finite number"),
    ("weight-str", lambda: Endpoint("GET /x", "GET", "/x", weight="1"), "weight must be a finite number"),
    ("ep-name", lambda: Endpoint(" ", "GET", "/x"), "Endpoint.name must be a non-empty"),
    ("ep-method", lambda: Endpoint("x", "FETCH", "/x"), "method must be one of"),
    ("ep-path", lambda: Endpoint("x", "GET", "x"), "path must start with '/'"),
    ("ep-auth", lambda: Endpoint("x", "GET", "/x", auth="no"), "auth must be True or False"),
    ("ep-headers", lambda: Endpoint("x", "GET", "/x", headers=[("a", "b")]), "headers must be a mapping"),
    ("ep-build", lambda: Endpoint("x", "GET", "/x", build=3), "build must be a callable"),
    ("task-type", lambda: tfp.task_endpoint("nope"), "task type must be one of"),
    # Phase / StressPlan
    ("phase-setup", lambda: tfp.Phase("setup", 1, rate=1), "Phase name 'setup' is reserved"),
    ("phase-teardown", lambda: tfp.Phase("Teardown ", 1, rate=1), "is reserved"),
    ("phase-dur-inf", lambda: tfp.Phase("a", INF, rate=1), "duration must be a number of seconds > 0"),
    ("phase-rate-nan", lambda: tfp.Phase("a", 1, rate=NAN), "rate must be >= 0"),
    ("phase-rate-inf", lambda: tfp.Phase("a", 1, rate=INF), "rate must be >= 0"),
    ("phase-conc-float", lambda: tfp.Phase("a", 1, concurrency=2.5), "concurrency must be an integer"),
    ("phase-think-neg", lambda: tfp.Phase("a", 1, concurrency=1, think_time=-1), "think_time must be >= 0"),
    ("phase-ws", lambda: tfp.Phase("a", 1, rate=1, websockets=-1), "websockets must be an integer >= 0"),
    ("phase-name", lambda: tfp.Phase("", 1, rate=1), "Phase name must be a non-empty string"),
    ("plan-none", lambda: tfp.StressPlan(None), "StressPlan takes a list of Phase objects"),
    ("plan-dict", lambda: tfp.StressPlan({"phases": []}), "use StressPlan.from_dict"),
    ("plan-empty", lambda: tfp.StressPlan([]), "needs at least one phase"),
    ("plan-dup", lambda: tfp.StressPlan([_PH, _PH]), "name is used twice"),
    ("fd-empty-phase", lambda: tfp.StressPlan.from_dict({"phases": [{}]}), r"phases\[0\] lacks 'name' and"),
    ("fd-no-phases", lambda: tfp.StressPlan.from_dict({}), "expected a mapping with a 'phases' list"),
    ("fd-not-dict", lambda: tfp.StressPlan.from_dict({"phases": [1]}), r"phases\[0\] must be a dict"),
    (
        "fd-typo",
        lambda: tfp.StressPlan.from_dict({"phases": [{"name": "a", "duration": 1, "rat": 1}]}),
        "unknown key.*'rat'",
    ),
    ("fd-phases-str", lambda: tfp.StressPlan.from_dict({"phases": "abc"}), "'phases' must be a list"),
    ("preset-list", lambda: tfp.StressPlan.preset(["dev"]), "preset name must be a string"),
    ("preset-unknown", lambda: tfp.StressPlan.preset("nope"), "unknown preset"),
    ("steps-inf", lambda: tfp.StressPlan.steps(0, INF, 1, 1), "steps: stop must be >= 0"),
    ("steps-step0", lambda: tfp.StressPlan.steps(0, 10, 0, 1), "steps: step must be > 0"),
    ("ramp-start-inf", lambda: tfp.StressPlan.ramp(10, INF, 5), "ramp: start must be >= 0"),
    ("ramp-model", lambda: tfp.StressPlan.ramp(10, 0, 5, model="x"), "model must be 'open' or 'closed'"),
    ("plan-users", lambda: tfp.StressPlan([_PH], recommended_users=0), "recommended_users must be"),
    # WsOptions
    ("ws-batch", lambda: tfp.WsOptions(batch_size=0), "WsOptions.batch_size must be an integer >= 1"),
    ("ws-interval", lambda: tfp.WsOptions(subscribe_interval=0), "WsOptions.subscribe_interval must be"),
    ("ws-timeout-nan", lambda: tfp.WsOptions(connect_timeout=NAN), "WsOptions.connect_timeout must be"),
    ("ws-timeout-inf", lambda: tfp.WsOptions(connect_timeout=INF), "connect_timeout must be a finite"),
    ("ws-backoff-inf", lambda: tfp.WsOptions(backoff_max=INF), "backoff_max must be a finite"),
    # LoadTester
    ("seed-list", lambda: _tester(seed=[1]), r"seed must be an integer .*\[1\]"),
    ("seed-float", lambda: _tester(seed=1.5), "seed must be an integer"),
    ("recent-neg", lambda: _tester(recent_tasks=-1), "recent_tasks must be an integer >= 1"),
    ("recent-zero", lambda: _tester(recent_tasks=0), "recent_tasks must be an integer >= 1"),
    ("monitor-zero", lambda: _tester(monitor_interval=0), "monitor_interval must be a finite number"),
    ("monitor-neg", lambda: _tester(monitor_interval=-1), "monitor_interval must be a finite number"),
    ("monitor-inf", lambda: _tester(monitor_interval=INF), "monitor_interval must be a finite number"),
    ("max-in-flight", lambda: _tester(max_in_flight=0), "max_in_flight must be an integer >= 1"),
    ("connections", lambda: _tester(connections=True), "connections must be an integer >= 1"),
    ("websockets-neg", lambda: _tester(websockets=-1), "websockets must be an integer >= 0"),
    ("ws-options", lambda: _tester(ws_options={}), "ws_options must be a WsOptions"),
    ("http-client", lambda: _tester(http_client="httpx"), "http_client must be 'fast' or 'aiohttp'"),
    ("assignment", lambda: _tester(assignment="random"), "assignment must be a strategy"),
    ("listeners", lambda: _tester(listeners=[1]), "each listener must be a callable"),
    ("live", lambda: _tester(live="yes"), "live must be True, False or None"),
    ("progress", lambda: _tester(setup_progress=1), "setup_progress must be a callable"),
    ("users-type", lambda: tfp.LoadTester("http://127.0.0.1:1", users=3), "users must be a UserPool"),
    ("mix-type", lambda: tfp.LoadTester("http://127.0.0.1:1", mix=[_EP]), "mix must be a RequestMix"),
    # UserSpec, Run, load_run, runs, report
    ("userspec-email", lambda: tfp.UserSpec(email=5, password="pw"), "UserSpec.email must be an e-mail"),
    ("userspec-pw", lambda: tfp.UserSpec(email="a@b.c", password=""), "UserSpec.password of 'a@b.c'"),
    ("run-events", lambda: tfp.Run(None, None, {}), r"Run\(events=...\) must be a Polars DataFrame"),
    ("run-ws", lambda: tfp.Run(__import__("polars").DataFrame(), 5, {}), "ws_events=.... must be a Pol"),
    ("run-meta", lambda: tfp.Run(__import__("polars").DataFrame(), None, None), r"meta=...\) must be a dict"),
    ("load-run-int", lambda: tfp.load_run(5), r"load_run\(path\) must be a folder path"),
    ("runs-int", lambda: tfp.runs(5), r"runs\(root\) must be a folder path"),
    ("report-nan", lambda: tfp.report("x", max_p95_regression=NAN), "max_p95_regression must be a finite"),
    ("report-output", lambda: tfp.report("x", output=None), "output must be an .html file path"),
    # Threshold
    ("th-error-rate-1", lambda: tfp.Threshold.parse("error_rate < 1"), "error_rate 1 is ambiguous"),
    ("th-error-rate-5", lambda: tfp.Threshold.parse("error_rate < 5"), "ambiguous.*'5%'"),
    (
        "th-builder-1",
        lambda: __import__("taskforge_perf.thresholds").thresholds.error_rate() < 1,
        "1 means 100%",
    ),
    ("th-inf", lambda: tfp.Threshold("p95", "<", INF), "value must be a finite number"),
    ("th-metric", lambda: tfp.Threshold.parse("p42 < 1ms"), "metric 'p42' is unknown"),
    ("th-open", lambda: tfp.Threshold.parse("p95(x < 1ms"), "the scope's '\\(' is not closed"),
    ("th-quote", lambda: tfp.Threshold.parse('p95("x) < 1ms'), "a quoted name is not closed"),
    ("th-scope", lambda: tfp.Threshold.parse("p95(a, b) < 1ms"), "cannot read scope 'b'"),
    ("th-unit", lambda: tfp.Threshold.parse("p95 < 1%"), "unit '%' does not apply"),
    ("th-type", lambda: tfp.Threshold.parse(None), "Threshold.parse expects a string"),
]


@pytest.mark.parametrize(("fn", "needle"), [(f, n) for _, f, n in BAD], ids=[i for i, _, _ in BAD])
def test_bad_input_is_a_config_error_naming_field_and_fix(fn: object, needle: str) -> None:
    with pytest.raises(tfp.ConfigError, match=needle):
        fn()  # type: ignore[operator]


def test_a_single_phase_is_a_plan() -> None:
    assert tfp.StressPlan(_PH) == tfp.StressPlan([_PH])
    assert tfp.RequestMix(_EP).endpoints == (_EP,)


@pytest.mark.parametrize("thresholds", [None, (), "p95 < 1s"])
def test_thresholds_none_or_one_string_are_accepted(thresholds: object) -> None:
    from taskforge_perf.threshold_eval import _coerce

    assert len(_coerce(thresholds)) == (1 if thresholds else 0)  # type: ignore[arg-type]
    with pytest.raises(tfp.ConfigError, match="thresholds must be a list"):
        _coerce(5)  # type: ignore[arg-type]


def test_run_checks_thresholds_and_name_before_any_traffic() -> None:
    tester = _tester()
    with pytest.raises(tfp.ConfigError, match="thresholds must be a list"):
        tester.run_sync(duration=1, rate=1, thresholds=5)
    with pytest.raises(tfp.ConfigError, match=r"run\(name=...\) must be a non-empty string"):
        tester.run_sync(duration=1, rate=1, name="")
