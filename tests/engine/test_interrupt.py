"""Interrupting ``run_sync``: in a real Jupyter kernel, and the wait itself (never Thread.is_alive)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import nbformat
import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.engine.sync import run_blocking
from taskforge_perf.report import _kernel_manager_class
from taskforge_perf.store import part_paths

CELL = """
import taskforge_perf as tfp
tester = tfp.LoadTester(tfp.Target({base!r}), tfp.UserPool(count=3, email_prefix="kernel"), live=False)
run = tester.run_sync(duration=120, concurrency=4, save_to={folder!r})
print("RESULT", run.meta["stopped"], run.load_events().height, run.path)
"""


def rows_on_disk(folder: Path) -> bool:
    return any(pl.read_parquet(p).height for p in part_paths(folder, "events"))


@pytest.mark.timeout(150)
async def test_kernel_interrupt_returns_the_partial_run_in_the_kernel(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    folder = tmp_path / "run"
    async with tfp.ReferenceTarget(seed=43, hash_iterations=1000) as target:
        nb = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(CELL.format(base=target.base_url, folder=str(folder)).strip())]
        )
        client = NotebookClient(
            nb,
            kernel_manager_class=_kernel_manager_class(),
            timeout=120,
            resources={"metadata": {"path": str(tmp_path)}},
        )
        async with client.async_setup_kernel():
            cell = asyncio.ensure_future(client.async_execute_cell(nb.cells[0], 0))
            deadline = time.monotonic() + 90
            while not rows_on_disk(folder):  # the run is going: rows flushed to its folder
                assert not cell.done(), cell.result()
                assert time.monotonic() < deadline, "the kernel's run never wrote rows"
                await asyncio.sleep(0.05)
            assert client.km is not None
            await client.km.interrupt_kernel()
            await cell
        logouts = (await target.ametrics())["taskforge_http_requests_total"].get(("POST /auth/logout", "200"))
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.get("name") == "stdout")
    assert "RESULT interrupted" in text, nb.cells[0].outputs
    stopped, rows, path = text.split("RESULT ", 1)[1].split()
    assert stopped == "interrupted" and int(rows) > 0 and Path(path) == folder
    assert tfp.load_run(folder).meta["stopped"] == "interrupted"
    assert logouts == 3


def test_interrupt_during_the_wait_returns_the_coroutine_outcome() -> None:
    """A KeyboardInterrupt raised in the waiting thread cancels the coroutine and hands back what
    it returned on cancellation (the old wait on Thread.is_alive() lost it: KeyError 'exc')."""
    started = threading.Event()
    main = threading.get_ident()

    async def work() -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # cleaning up takes a while after the interrupt
            return "partial"
        return "full"

    def interrupt_main() -> None:
        started.wait()
        import _thread

        assert threading.get_ident() != main
        _thread.interrupt_main()  # KeyboardInterrupt in the waiting (main) thread, like Ctrl-C

    seen: list[str] = []
    threading.Thread(target=interrupt_main, daemon=True).start()
    assert run_blocking(work, on_interrupt=lambda: seen.append("interrupted")) == "partial"
    assert seen == ["interrupted"]
