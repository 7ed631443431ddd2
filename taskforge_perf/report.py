"""Shareable reports: run a template notebook on saved run(s) and export self-contained HTML.

The template (``taskforge_perf/templates/report.ipynb``) is executed with nbclient in a kernel of
the running interpreter, then exported with nbconvert's HTMLExporter (lab template, code hidden)
minus every script the template would fetch from a CDN (require.js, MathJax, Mermaid, widgets).
Charts are inline SVG drawn by vl-convert (``rendering.setup_notebook``), so the file renders with
no network and no JavaScript: one can attach it to an e-mail.

>>> import taskforge_perf as tfp
>>> tfp.report("data/samples/candidate", compare="data/samples/baseline",
...            output="report.html")                                  # doctest: +SKIP
PosixPath('report.html')
"""

from __future__ import annotations

import copy
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from taskforge_perf.errors import ConfigError, RunError
from taskforge_perf.redact import redact_text

__all__ = ["execute_notebook", "export_html", "inject_parameters", "report"]

Progress = Callable[[str], None]
TEMPLATE = "report.ipynb"
#: The nbconvert template: JupyterLab's, without the scripts it loads from CDNs.
_HTML_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""


def _stderr(msg: str) -> None:
    print(f"taskforge-perf report: {msg}", file=sys.stderr, flush=True)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return False
    return shell is not None and hasattr(shell, "kernel")


class _NotebookProgress:
    """One progress bar, updated in place, instead of a stderr line per cell."""

    def __init__(self) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self._handle = display(self._bar(0, "starting ..."), display_id=True)

    def _bar(self, frac: float, text: str) -> object:
        pct = max(0.0, min(frac, 1.0)) * 100
        return self._html(
            "<div style='font-size:12px;color:#555'>taskforge-perf report "
            f"<progress value='{pct:.0f}' max='100' style='width:180px;vertical-align:middle'></progress>"
            f" {text}</div>"
        )

    def __call__(self, msg: str) -> None:
        frac = 0.0
        if msg.startswith("cell "):
            done, total = msg.split()[1].split("/")
            frac = (int(done) - 1) / max(int(total), 1) * 0.9
        elif msg.startswith("exporting"):
            frac = 0.95
        elif msg.startswith("wrote"):
            frac = 1.0
        if self._handle is not None:
            self._handle.update(self._bar(frac, msg))


class ReportFile(type(Path())):  # type: ignore[misc]
    """The written report's path; in a notebook it shows a link and the verdict box as a preview."""

    preview: str = ""

    def _repr_html_(self) -> str:
        import html

        href = html.escape(os.path.relpath(self, Path.cwd()) if not self.is_absolute() else self.as_uri())
        size = self.stat().st_size / 1024 if self.exists() else 0
        return (
            f"<div><a href='{href}' target='_blank'>Open the report: {html.escape(str(self))}</a> "
            f"({size:,.0f} KB)</div>{self.preview}"
        )


def inject_parameters(nb: Any, parameters: Mapping[str, Any]) -> Any:
    """Insert a cell assigning ``parameters`` right after the ``parameters``-tagged cell.

    The same convention as papermill: the new cell is tagged ``injected-parameters`` and
    overrides the defaults. Values must have a Python ``repr`` that evaluates back to them.
    """
    import nbformat

    if not parameters:
        return nb
    lines = ["# Injected parameters"] + [f"{k} = {v!r}" for k, v in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["injected-parameters"]
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    at = tagged[0] + 1 if tagged else 0
    nb.cells.insert(at, cell)
    return nb


def _kernel_manager_class() -> Any:
    """An async kernel manager that starts ipykernel with this very interpreter (not whatever
    ``python3`` kernelspec a user's Jupyter path holds first)."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class ThisPython(AsyncKernelManager):  # type: ignore[misc]
        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(
                # ERROR log level: the kernel's "running over TCP without encryption" warning is
                # noise for a kernel on 127.0.0.1 that lives for one report.
                argv=[
                    sys.executable,
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                    "--IPKernelApp.log_level=ERROR",
                ],
                display_name="Python 3 (taskforge-perf)",
                language="python",
                resource_dir="",
                # debugpy's note about frozen modules is noise in a non-interactive kernel
                env={"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
            )

    return ThisPython


def execute_notebook(
    nb: Any,
    parameters: Mapping[str, Any] | None = None,
    *,
    cwd: str | Path | None = None,
    timeout: float = 600,
    progress: Progress | None = None,
) -> Any:
    """Execute a notebook (a path or an ``nbformat`` node) top to bottom; returns the executed node.

    ``parameters`` are injected after the ``parameters``-tagged cell. The kernel runs this Python
    interpreter, in ``cwd`` (default: the notebook's folder, or the working directory). A failing
    cell raises ``nbclient.exceptions.CellExecutionError`` naming the cell and the error.
    """
    import nbformat
    from nbclient import NotebookClient

    if isinstance(nb, str | Path):
        path = Path(nb)
        nb = nbformat.read(path, as_version=4)
        cwd = cwd if cwd is not None else path.parent
    inject_parameters(nb, parameters or {})
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]

    def on_start(cell: Any, cell_index: int) -> None:
        if progress is not None and cell.cell_type == "code":
            progress(f"cell {code.index(cell_index) + 1}/{len(code)}")

    client = NotebookClient(
        nb,
        kernel_name="python3",
        kernel_manager_class=_kernel_manager_class(),
        timeout=int(timeout),
        allow_errors=False,
        resources={"metadata": {"path": str(cwd or Path.cwd())}},
        on_cell_start=on_start,
    )
    client.execute()
    return nb


def export_html(nb: Any, *, title: str | None = None, hide_code: bool = True) -> str:
    """A self-contained HTML page of an executed notebook: no script is fetched from a CDN."""
    import jinja2
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"tfp_report.html.j2": _HTML_TEMPLATE})],
        template_file="tfp_report.html.j2",
        embed_images=True,
        exclude_input=hide_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    _inline_svg(nb)
    if title:
        nb.metadata["title"] = title
    body, _ = exporter.from_notebook_node(nb)
    return str(body)


def _inline_svg(nb: Any) -> None:
    """Turn SVG outputs into HTML outputs holding the ``<svg>`` element itself.

    nbconvert would embed them as base64 ``<img>`` (or, asked not to encode, strip the tags with
    its sanitiser); inline elements stay crisp, searchable and in the page's DOM.
    """
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            svg = data.get("image/svg+xml")
            if svg and "text/html" not in data:
                svg = "".join(svg) if isinstance(svg, list) else svg
                start = svg.find("<svg")
                data["text/html"] = f"<div class='tfp-chart'>{svg[max(start, 0) :]}</div>"
                del data["image/svg+xml"]


def _template() -> Any:
    import nbformat

    text = resources.files("taskforge_perf").joinpath("templates", TEMPLATE).read_text("utf-8")
    return nbformat.reads(text, as_version=4)


def _run_dir(run: Any, tmp: Path, label: str) -> str:
    """A saved run's folder (an unsaved ``Run`` is saved into ``tmp`` first)."""
    from taskforge_perf.results import Run

    if isinstance(run, Run):
        saved = run.path is not None and (run.path / "meta.json").is_file()
        if saved and run.meta.get("stopped") != "running":
            return str(run.path.resolve())  # type: ignore[union-attr]  # on disk already: no copy
        return str(run.save(tmp / label).resolve())
    folder = Path(run)
    if not (folder / "meta.json").is_file():
        raise ConfigError(
            f"{folder} is not a saved run (no meta.json there); pass a Run or a folder written by "
            "run.save() / taskforge-perf run"
        )
    return str(folder.resolve())


def report(
    run: Any,
    compare: Any = None,
    output: str | Path = "report.html",
    *,
    title: str | None = None,
    max_p95_regression: float = 0.10,
    progress: bool | Progress = True,
    timeout: float = 600,
) -> Path:
    """Write a self-contained HTML report of a run (a ``Run`` or a saved run folder).

    With ``compare`` (another run, the baseline), the report adds the baseline-vs-candidate
    table, charts and verdict (``max_p95_regression``). Progress: one bar updated in place in a
    notebook, lines on stderr elsewhere; ``progress=False`` for none, or a callable taking a
    message. A ``Run`` already saved (``run.path``) is read from there, not saved again. Returns the
    output path (a ``Path`` that, in a notebook, displays a link and the verdict box).

    >>> tfp.report("data/runs/candidate-...", compare="data/runs/baseline-...",
    ...            output="candidate.html")                       # doctest: +SKIP
    """
    if progress is True:
        say: Progress | None = _NotebookProgress() if _in_notebook() else _stderr
    else:
        say = progress or None
    m = max_p95_regression
    if isinstance(m, bool) or not isinstance(m, int | float) or not 0 <= m < math.inf:
        raise ConfigError(f"max_p95_regression must be a finite fraction >= 0 (got {m!r}); e.g. 0.10 for 10%")
    if not isinstance(output, str | Path) or not str(output).strip():
        raise ConfigError(f"output must be an .html file path (got {output!r}), e.g. 'report.html'")
    out = Path(output)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"output must be an .html file (got {str(out)!r}), e.g. -o report.html")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tfp-report-") as tmp_s:
        tmp = Path(tmp_s)
        params: dict[str, Any] = {
            "RUN_DIR": _run_dir(run, tmp, "run"),
            "COMPARE_DIR": _run_dir(compare, tmp, "baseline") if compare is not None else None,
            "TITLE": title,
            "MAX_P95_REGRESSION": max_p95_regression,
        }
        if say:
            say(f"executing the report notebook on {params['RUN_DIR']} ...")
        from nbclient.exceptions import CellExecutionError

        try:
            nb = execute_notebook(_template(), params, cwd=tmp, timeout=timeout, progress=say)
        except CellExecutionError as exc:
            raise RunError(
                f"the report notebook failed on {params['RUN_DIR']}: {exc.ename}: {redact_text(exc.evalue)}"
            ) from exc
        if say:
            say("exporting HTML ...")
        name = Path(params["RUN_DIR"]).name
        page = export_html(nb, title=title or f"taskforge-perf report: {name}")
    # A report is shared: URL credentials or tokens that reached any output (a run saved by an
    # older version, a message printed by a cell) are masked in the page as well.
    page = redact_text(page)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    if say:
        say(f"wrote {out} ({len(page) / 1024:,.0f} KB) in {time.perf_counter() - t0:.1f} s")
    result = ReportFile(out)
    result.preview = _preview(params["RUN_DIR"], params["COMPARE_DIR"], max_p95_regression)
    return result


def _preview(run_dir: str, compare_dir: str | None, max_regression: float) -> str:
    """The report's verdict box (the first thing in the page), for the notebook's output."""
    try:
        from taskforge_perf.compare import compare as _compare
        from taskforge_perf.report_parts import verdict_html
        from taskforge_perf.results import load_run

        run = load_run(run_dir)
        cmp = _compare(compare_dir, run, max_regression=max_regression) if compare_dir else None
        return verdict_html(run, cmp)
    except Exception as exc:  # a preview must never cost the report
        return f"<div>(no preview: {type(exc).__name__})</div>"
