"""Plans, mixes and thresholds as TOML files: the examples load, and errors name file, line, field."""

from __future__ import annotations

from pathlib import Path

import pytest

import taskforge_perf as tfp
from taskforge_perf.errors import ConfigError
from taskforge_perf.plan import PlanError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_examples_load_as_the_python_objects() -> None:
    plan = tfp.StressPlan.from_toml(EXAMPLES / "plan.toml")
    assert [p.name for p in plan.phases] == ["warmup", "peak", "spike", "cooldown"]
    assert plan.phases[1].ramp and plan.phases[1].rate == 60
    assert plan.phases[3].concurrency == 5 and plan.recommended_users == 10
    assert plan == tfp.StressPlan.from_dict(plan.to_dict())
    mix = tfp.RequestMix.from_toml(EXAMPLES / "mix.toml")
    assert mix.shares()["POST /tasks resize-image"] == pytest.approx(0.35)
    health = next(e for e in mix.endpoints if e.name == "GET /health")
    assert health.auth is False and health.path == "/health"
    checks = tfp.Threshold.load_toml(EXAMPLES / "thresholds.toml")
    assert [str(t) for t in checks[:2]] == ["error_rate < 1%", "p95(POST /tasks generate-pdf) < 500ms"]
    assert checks[-1].abort_on_fail and not checks[0].abort_on_fail


def test_plan_field_error_names_file_line_and_field(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "plan.toml",
        '[[phases]]\nname = "warm"\nduration = 5\nrate = 10\n\n'
        '[[phases]]\nname = "peak"\nduration = 5\nrate = -3\n',
    )
    with pytest.raises(PlanError) as err:
        tfp.StressPlan.from_toml(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}, line 9, phases[1].rate: ")
    assert "rate must be >= 0" in msg


def test_plan_unknown_key_and_missing_rate(tmp_path: Path) -> None:
    p = _write(tmp_path, "plan.toml", '[[phases]]\nname = "a"\nduration = 5\nrat = 10\n')
    with pytest.raises(ConfigError, match=r"line 4, phases\[0\]\.rat: unknown key 'rat'"):
        tfp.StressPlan.from_toml(p)
    p = _write(tmp_path, "plan2.toml", 'x = 1\n[[phases]]\nname = "a"\nduration = 5\n')
    with pytest.raises(ConfigError, match=r"plan2.toml, line 1, x: unknown key"):
        tfp.StressPlan.from_toml(p)
    p = _write(tmp_path, "plan3.toml", '[[phases]]\nname = "a"\nduration = 5\n')
    with pytest.raises(PlanError, match=r"plan3.toml, line 1, phases\[0\]: .*set rate="):
        tfp.StressPlan.from_toml(p)


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "plan.toml", '[[phases]]\nname = "a"\nduration = = 5\n')
    with pytest.raises(ConfigError, match=r"plan.toml, line 3: not valid TOML"):
        tfp.StressPlan.from_toml(p)
    with pytest.raises(ConfigError, match="no such plan file"):
        tfp.StressPlan.from_toml(tmp_path / "missing.toml")


def test_mix_errors(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "mix.toml",
        '[[endpoints]]\ntask = "generate-pdf"\nweight = 3\n\n[[endpoints]]\nname = "h"\nmethod = "GET"\n'
        'path = "/health"\nweight = -1\n',
    )
    with pytest.raises(ConfigError, match=r"mix.toml, line 9, endpoints\[1\]\.weight: .*weight must be"):
        tfp.RequestMix.from_toml(p)
    p = _write(tmp_path, "mix2.toml", '[[endpoints]]\ntask = "make-coffee"\n')
    with pytest.raises(ConfigError, match=r"mix2.toml, line 2, endpoints\[0\]\.task: task type must be"):
        tfp.RequestMix.from_toml(p)
    with pytest.raises(ConfigError, match=r"endpoints\[0\]\.path: .*must start with '/'"):
        tfp.RequestMix.from_dict({"endpoints": [{"name": "x", "method": "GET", "path": "x"}]})


def test_mix_static_json_body() -> None:
    mix = tfp.RequestMix.from_dict(
        {"endpoints": [{"name": "POST /tasks etl", "method": "POST", "path": "/tasks", "json": {"a": 1}}]}
    )
    e = mix.endpoints[0]
    assert e.body("u", None, None) == b'{"a":1}'  # type: ignore[arg-type]
    assert e.headers["Content-Type"] == "application/json"


def test_threshold_errors_name_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "t.toml", 'thresholds = [\n  "error_rate < 1%",\n  "p95 <<< 3ms",\n]\n')
    with pytest.raises(ConfigError, match=r"t.toml, line 3, thresholds\[1\]: "):
        tfp.Threshold.load_toml(p)
    p = _write(tmp_path, "t2.toml", '[[threshold]]\nexpr = "p95 < 1ms"\nabort_on_fail = "yes"\n')
    with pytest.raises(ConfigError, match=r"t2.toml, line 3, threshold\[0\]\.abort_on_fail"):
        tfp.Threshold.load_toml(p)
    p = _write(tmp_path, "t3.toml", "")
    with pytest.raises(ConfigError, match="no thresholds"):
        tfp.Threshold.load_toml(p)
