"""Run a coroutine to completion from synchronous code, even inside a running event loop.

The coroutine gets its own event loop (uvloop's when installed) in a dedicated thread, so this works
in a Jupyter cell without nest_asyncio. The calling thread waits for a "finished" signal that the
loop thread gives once the coroutine has ended (never on ``Thread.is_alive()``: on CPython 3.11 and
3.12 a KeyboardInterrupt during ``Thread.join()`` marks a still-running thread as stopped). Ctrl-C /
a kernel interrupt cancels the coroutine through ``call_soon_threadsafe`` and waits for it to wind
down; a second one stops waiting at once (KeyboardInterrupt), leaving the loop thread to finish.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Seconds between checks of the finished flag (the wait wakes at once when the run ends).
_POLL_S = 0.25


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop: uvloop's when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where the platform has it
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_blocking(
    make: Callable[[], Coroutine[Any, Any, T]],
    *,
    what: str = "the run",
    on_interrupt: Callable[[], None] | None = None,
) -> T:
    """Run ``make()`` on its own loop in a thread and block until it ends.

    The first interrupt calls ``on_interrupt`` (in the calling thread) and cancels the coroutine;
    its CancelledError (or any other exception) is re-raised here once it has finished cleaning up.
    A second interrupt re-raises KeyboardInterrupt at once without waiting.
    """
    loop = new_event_loop()
    box: dict[str, Any] = {}
    started = threading.Event()
    # The "finished" event is a bare lock released by the loop thread: acquiring a lock with a
    # timeout is one C call that a signal interrupts cleanly, whereas an interrupt landing inside
    # threading.Event.wait()'s Python code can leave its condition's lock held (and set() hang).
    finished = threading.Lock()
    finished.acquire()

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["task"] = loop.create_task(make())
            started.set()
            box["result"] = loop.run_until_complete(box["task"])
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            box["exc"] = exc
        finally:
            started.set()
            box["done"] = True
            finished.release()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def first_interrupt() -> None:
        if on_interrupt is not None:
            on_interrupt()
        started.wait()
        _cancel(loop, box.get("task"))
        print(
            f"taskforge-perf: interrupted, stopping {what} and keeping its events "
            "(interrupt again to leave at once)...",
            file=sys.stderr,
        )

    thread = threading.Thread(target=main, name="taskforge-perf-run", daemon=True)
    interrupts = 0
    try:
        thread.start()
    except KeyboardInterrupt:
        # Thread.start() waits for the thread to begin: an interrupt there (the run's first
        # instants) stops the run like any other first interrupt, once the thread exists.
        if thread.ident is None:
            raise
        interrupts = 1
        first_interrupt()
    while "done" not in box:
        try:
            finished.acquire(timeout=_POLL_S)
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts > 1:
                print(
                    f"taskforge-perf: interrupted again, leaving {what} without waiting "
                    "(what was already written to disk is kept)",
                    file=sys.stderr,
                )
                raise
            first_interrupt()
    if "result" in box:
        return box["result"]  # type: ignore[no-any-return]
    raise box["exc"]


def _cancel(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` from another thread; nothing to do when its loop has already ended."""
    if task is None:
        return
    try:
        loop.call_soon_threadsafe(task.cancel)
    except (RuntimeError, OSError):  # the loop closed meanwhile: the run finished on its own
        pass
