"""Simulated TaskForge workers: an outbox, a queue per task type and a concurrency limit per type.

A task goes created -> (outbox poll) -> queue -> worker. A worker announces ``processing``
(progress 10) after 1/6 of the task's duration, progress 50 at half, then ``completed`` (with a
``fileUrl``) or ``failed``. With more tasks than workers, tasks wait in the queue, so overload shows
up as end-to-end delay, like the real system. With ``real_quirks`` the outbox is polled every 5 s
(``outbox_interval``), dispatches at most ``outbox_batch`` tasks per type per poll and only the
three types the real system dispatches; the image worker publishes ``{taskId, success, url}``
without a status.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from collections.abc import Callable

from taskforge_perf.target.config import OUTBOX_TYPES, TASK_TYPES, TargetConfig
from taskforge_perf.target.metrics import Metrics

#: publish(task_id, owner user id, JSON text)
Publish = Callable[[str, str, str], None]
_OWNERS_MAX = 200_000
_EXT = {
    "generate-pdf": "pdf",
    "resize-image": "png",
    "screenshot-website": "png",
    "compress-video": "mp4",
    "generate-report": "pdf",
    "etl-data": "csv",
    "scrape-website": "json",
}


class Workers:
    """The worker side of one target process."""

    def __init__(self, config: TargetConfig, metrics: Metrics, publish: Publish) -> None:
        self._cfg = config
        self._metrics = metrics
        self._publish = publish
        self._rng = random.Random(None if config.seed is None else config.seed + 2)
        self._owners: dict[str, str] = {}
        self._outbox: dict[str, deque[str]] = {t: deque() for t in TASK_TYPES}
        self._queues: dict[str, asyncio.Queue[str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._interval = config.effective_outbox_interval
        self._dispatched = OUTBOX_TYPES if config.real_quirks else TASK_TYPES
        self._durations = {t: config.duration_for(t) for t in TASK_TYPES}
        metrics.queued = self.queued

    def owner_of(self, task_id: str) -> str | None:
        return self._owners.get(task_id)

    def queued(self) -> dict[str, int]:
        return {
            t: len(self._outbox[t]) + (self._queues[t].qsize() if self._queues else 0) for t in TASK_TYPES
        }

    def submit(self, task_id: str, task_type: str, owner: str) -> None:
        owners = self._owners
        if len(owners) >= _OWNERS_MAX:
            for key in list(owners)[: _OWNERS_MAX // 10]:
                del owners[key]
        owners[task_id] = owner
        if self._interval > 0:
            self._outbox[task_type].append(task_id)
        else:
            self._queues[task_type].put_nowait(task_id)

    async def start(self) -> None:
        for t in TASK_TYPES:
            q: asyncio.Queue[str] = asyncio.Queue()
            self._queues[t] = q
            for _ in range(self._cfg.worker_concurrency):
                self._tasks.append(asyncio.create_task(self._work(t, q)))
        if self._interval > 0:
            self._tasks.append(asyncio.create_task(self._poll_outbox()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _poll_outbox(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            for t in self._dispatched:
                box, q = self._outbox[t], self._queues[t]
                for _ in range(min(len(box), self._cfg.outbox_batch)):
                    q.put_nowait(box.popleft())

    def _send(self, task_id: str, msg: dict[str, object]) -> None:
        owner = self._owners.get(task_id, "")
        self._publish(task_id, owner, json.dumps(msg))

    async def _work(self, task_type: str, q: asyncio.Queue[str]) -> None:
        delay = self._durations[task_type]
        rng = self._rng
        image_quirk = self._cfg.real_quirks and task_type == "resize-image"
        ext = _EXT[task_type]
        while True:
            task_id = await q.get()
            d = delay.sample(rng)
            await asyncio.sleep(d / 6)
            if not image_quirk:
                self._send(
                    task_id,
                    {
                        "taskId": task_id,
                        "status": "processing",
                        "progress": 10,
                        "message": "Task started",
                        "fileUrl": None,
                    },
                )
            await asyncio.sleep(d / 3)
            if not image_quirk:
                self._send(
                    task_id,
                    {
                        "taskId": task_id,
                        "status": "processing",
                        "progress": 50,
                        "message": "Halfway there",
                        "fileUrl": None,
                    },
                )
            await asyncio.sleep(d / 2)
            failed = rng.random() < self._cfg.task_failure_rate
            url = f"https://files.taskforge.local/{task_type}/{task_id}.{ext}"
            if image_quirk:
                msg: dict[str, object] = (
                    {"taskId": task_id, "success": False, "error": "Simulated failure"}
                    if failed
                    else {"taskId": task_id, "success": True, "url": url}
                )
            elif failed:
                msg = {
                    "taskId": task_id,
                    "status": "failed",
                    "progress": 50,
                    "message": "Simulated failure",
                    "fileUrl": None,
                }
            else:
                msg = {
                    "taskId": task_id,
                    "status": "completed",
                    "progress": 100,
                    "message": "Task completed",
                    "fileUrl": url,
                }
            self._send(task_id, msg)
            key = (task_type, "failed" if failed else "completed")
            fin = self._metrics.tasks_finished
            fin[key] = fin.get(key, 0) + 1
