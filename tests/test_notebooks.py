"""Every notebook in notebooks/ runs top to bottom (short parameters) and is stored without outputs.

Kernels run this interpreter (the project venv), started by ``taskforge_perf.report``'s kernel
manager; the notebooks talk only to reference targets they start on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskforge_perf.report import execute_notebook

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
#: Short parameters: seconds of load instead of minutes.
SHORT: dict[str, dict[str, Any]] = {
    "01_quickstart": {"DURATION": 2, "CONCURRENCY": 10, "USERS": 5, "WEBSOCKETS": 5},
    "02_stress_plan": {"PHASE_S": 0.5, "STEP_S": 1, "STEPS": (50, 350, 150)},
    "03_compare_builds": {"DURATION": 2, "RATE": 100, "RUNS": 2},
    "04_websocket_status": {"DURATION": 4, "RATE": 30, "WEBSOCKETS": 5, "DROP_EVERY": 2.0},
    "05_explore_saved_runs": {},
    "06_capacity_and_users": {
        "DURATION": 2,
        "RATE": 60,
        "SESSION_RATE": 3,
        "CAP_START": 150,  # capacity ~200/s: 150 holds, 225 (x1.5) breaks, and 75 <= 50% of 150
        "CAP_PRECISION": 0.5,
    },
}
WIDGET = "application/vnd.jupyter.widget-view+json"


def _paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_five_notebooks_are_there() -> None:
    assert [p.stem for p in _paths()] == sorted(SHORT)


@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.stem)
def test_stored_without_outputs_and_parameterised(path: Path) -> None:
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), (
        f"{path.name} has outputs: clear them before committing"
    )
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    assert nb["cells"][0]["cell_type"] == "markdown", "a notebook starts by saying what it does"
    source = "".join("".join(c["source"]) for c in nb["cells"])
    for host in ("http://", "ws://"):
        assert host not in source.replace("http://127.0.0.1", ""), "only servers it starts"


def _outputs(nb: Any) -> list[dict[str, Any]]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path) -> None:
    nb = execute_notebook(path, SHORT[path.stem], timeout=80)
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    data = [o.get("data", {}) for o in outputs]
    # Charts came out as offline SVG (never the CDN-loading HTML of Altair's default renderer).
    assert any("image/svg+xml" in d for d in data), f"{path.stem}: no chart rendered as SVG"
    assert not any("cdn.jsdelivr" in str(d.get("text/html", "")) for d in data)
    runs_load = "tester.run(" in "".join(c.source for c in nb.cells)
    if runs_load:
        # The live dashboard replaced itself with a static snapshot that survives export.
        assert not any(WIDGET in d for d in data), "a live widget was left in the saved output"
        snaps = [d["text/html"] for d in data if "tfp-snapshot" in str(d.get("text/html", ""))]
        assert snaps and all("<svg" in s and "<table" in s for s in snaps)
