"""Simulated TaskForge workers: an outbox, a queue per task type and consumers per type.

A task goes created -> (outbox pass) -> queue -> worker. Each worker publishes the real worker's
messages, in every mode (they are the real contract):

- generate-pdf (and the types the real system never runs): one ``processing`` message, then
  ``{taskId, status: "completed", progress: 100, message, fileUrl}`` (or ``status: "failed"``);
- compress-video: three ``processing`` messages (progress 10, 30, 80), then
  ``{taskId, progress: 100, success: true, url}`` with no status;
- resize-image: only ``{taskId, success: true, url}``, or ``{taskId, url, cached: true}`` when the
  same image (imageUrl, width, height) was already stored; failures are ``{success: false}``.

With more tasks than consumers, tasks wait in the queue, so overload shows up as end-to-end delay.
With ``real_quirks`` the outbox makes its first pass ``outbox_first_delay`` (60 s) after the start,
then one every ``outbox_interval`` (5 s; twice / three times that while a queue's backlog exceeds
50 / 100 per consumer), dispatches at most ``outbox_batch`` (20) tasks per type per pass and only
the three types the real system dispatches, to one consumer per queue with prefetch 1.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from taskforge_perf.target.config import OUTBOX_TYPES, TASK_TYPES, TargetConfig
from taskforge_perf.target.metrics import Metrics

#: publish(task_id, owner user id, JSON text, final_status)
Publish = Callable[[str, str, str, bool], None]
_OWNERS_MAX = 200_000
_STORED_MAX = 100_000
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
        self._image_keys: dict[str, str] = {}  # task id -> stored-image key (resize-image only)
        self._stored: dict[str, str] = {}  # image key -> url already stored (the real {cached: true})
        self._outbox: dict[str, deque[str]] = {t: deque() for t in TASK_TYPES}
        self._queues: dict[str, asyncio.Queue[str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._interval = config.effective_outbox_interval
        self._first = config.effective_outbox_first_delay
        self._consumers = config.effective_worker_concurrency
        self._dispatched = OUTBOX_TYPES if config.real_quirks else TASK_TYPES
        self._durations = {t: config.duration_for(t) for t in TASK_TYPES}
        metrics.queued = self.queued
        metrics.outbox_interval = self._first if self._interval > 0 else 0.0

    def owner_of(self, task_id: str) -> str | None:
        return self._owners.get(task_id)

    def queued(self) -> dict[str, int]:
        return {
            t: len(self._outbox[t]) + (self._queues[t].qsize() if self._queues else 0) for t in TASK_TYPES
        }

    def submit(self, task_id: str, task_type: str, owner: str, payload: dict[str, Any] | None = None) -> None:
        owners = self._owners
        if len(owners) >= _OWNERS_MAX:
            for key in list(owners)[: _OWNERS_MAX // 10]:
                del owners[key]
                self._image_keys.pop(key, None)
        owners[task_id] = owner
        if task_type == "resize-image" and payload is not None:
            p = payload.get
            self._image_keys[task_id] = f"{p('imageUrl')}|{p('width')}|{p('height')}"
        if self._interval > 0:
            self._outbox[task_type].append(task_id)
        else:
            self._queues[task_type].put_nowait(task_id)

    async def start(self) -> None:
        for t in TASK_TYPES:
            q: asyncio.Queue[str] = asyncio.Queue()
            self._queues[t] = q
            for _ in range(self._consumers):
                self._tasks.append(asyncio.create_task(self._work(t, q)))
        if self._interval > 0:
            self._tasks.append(asyncio.create_task(self._poll_outbox()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _poll_outbox(self) -> None:
        m, batch, quirks = self._metrics, self._cfg.outbox_batch, self._cfg.real_quirks
        await asyncio.sleep(self._first)
        while True:
            backlog = 0
            for t in self._dispatched:
                box, q = self._outbox[t], self._queues[t]
                n = min(len(box), batch)
                for _ in range(n):
                    q.put_nowait(box.popleft())
                if n:
                    m.tasks_dispatched[t] = m.tasks_dispatched.get(t, 0) + n
                backlog = max(backlog, q.qsize())
            interval = self._interval
            if quirks:  # the real outbox-publisher slows down when the queues back up
                per_consumer = backlog / self._consumers
                interval *= 3 if per_consumer > 100 else 2 if per_consumer > 50 else 1
            m.outbox_passes += 1
            m.outbox_interval = interval
            await asyncio.sleep(interval)

    def _send(self, task_id: str, msg: dict[str, object], final_status: bool = False) -> None:
        owner = self._owners.get(task_id, "")
        self._publish(task_id, owner, json.dumps(msg), final_status)

    def _url(self, task_type: str, task_id: str) -> str:
        return f"https://files.taskforge.local/{task_type}/{task_id}.{_EXT[task_type]}"

    async def _work(self, task_type: str, q: asyncio.Queue[str]) -> None:
        delay = self._durations[task_type]
        rng = self._rng
        run = {"compress-video": self._video, "resize-image": self._image}.get(task_type, self._pdf)
        while True:
            task_id = await q.get()
            failed = await run(task_type, task_id, delay.sample(rng))
            key = (task_type, "failed" if failed else "completed")
            fin = self._metrics.tasks_finished
            fin[key] = fin.get(key, 0) + 1

    def _fails(self) -> bool:
        return self._rng.random() < self._cfg.task_failure_rate

    async def _pdf(self, task_type: str, task_id: str, d: float) -> bool:
        await asyncio.sleep(d / 6)
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
        await asyncio.sleep(d * 5 / 6)
        if self._fails():
            msg: dict[str, object] = {
                "taskId": task_id,
                "status": "failed",
                "progress": 10,
                "message": "Simulated failure",
                "fileUrl": None,
            }
            self._send(task_id, msg, final_status=True)
            return True
        msg = {
            "taskId": task_id,
            "status": "completed",
            "progress": 100,
            "message": "Task completed",
            "fileUrl": self._url(task_type, task_id),
        }
        self._send(task_id, msg, final_status=True)
        return False

    async def _video(self, task_type: str, task_id: str, d: float) -> bool:
        for progress, at in ((10, d / 6), (30, d / 6), (80, d / 3)):
            await asyncio.sleep(at)
            msg = {"taskId": task_id, "status": "processing", "progress": progress, "message": "Compressing"}
            self._send(task_id, msg)
        await asyncio.sleep(d / 3)
        if self._fails():
            self._send(task_id, {"taskId": task_id, "success": False, "error": "Simulated failure"})
            return True
        url = self._url(task_type, task_id)
        self._send(task_id, {"taskId": task_id, "progress": 100, "success": True, "url": url})
        return False

    async def _image(self, task_type: str, task_id: str, d: float) -> bool:
        key = self._image_keys.pop(task_id, None)
        url = self._stored.get(key) if key is not None else None
        if url is not None:  # already stored: answered at once, no resize
            await asyncio.sleep(d / 10)
            self._send(task_id, {"taskId": task_id, "url": url, "cached": True})
            return False
        await asyncio.sleep(d)
        if self._fails():
            self._send(task_id, {"taskId": task_id, "success": False, "error": "Simulated failure"})
            return True
        url = self._url(task_type, task_id)
        if key is not None:
            stored = self._stored
            if len(stored) >= _STORED_MAX:
                del stored[next(iter(stored))]
            stored[key] = url
        self._send(task_id, {"taskId": task_id, "success": True, "url": url})
        return False
