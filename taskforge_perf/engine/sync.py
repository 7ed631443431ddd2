"""Run a coroutine to completion from synchronous code, even inside a running event loop.

The coroutine gets its own event loop (uvloop's when installed) in a dedicated thread, so this works
in a Jupyter cell without nest_asyncio. Ctrl-C / a kernel interrupt in the calling thread cancels the
coroutine through ``call_soon_threadsafe`` and waits for it to wind down.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop: uvloop's when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where the platform has it
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_blocking(make: Callable[[], Coroutine[Any, Any, T]], *, what: str = "the run") -> T:
    """Run ``make()`` on its own loop in a thread and block until it ends.

    An interrupt cancels it; the coroutine's CancelledError (or any other exception) is re-raised
    in the calling thread once it has finished cleaning up.
    """
    loop = new_event_loop()
    box: dict[str, Any] = {}
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["task"] = loop.create_task(make())
            ready.set()
            box["result"] = loop.run_until_complete(box["task"])
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            box["exc"] = exc
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=main, name="taskforge-perf-run", daemon=True)
    thread.start()
    while thread.is_alive():
        try:
            thread.join(0.1)
        except KeyboardInterrupt:
            ready.wait()
            task = box.get("task")
            if task is not None and not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)
            print(
                f"taskforge-perf: interrupted, stopping {what} and keeping its events...",
                file=sys.stderr,
            )
    if "result" in box:
        return box["result"]  # type: ignore[no-any-return]
    raise box["exc"]
