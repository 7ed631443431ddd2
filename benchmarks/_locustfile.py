"""Locust FastHttpUser contender for ``bench_engine.py`` (runs in the throwaway locust venv).

The same traffic as the engine's TaskForge mix: health 10, POST /tasks (pdf 30, video 25,
image 35) with a generated JSON payload and a Bearer token of one of 20 users, metrics 5.
``StaticUser`` (chosen on the command line) only GETs the static file (the FACTS.md anchor).
CPU, wall time and requests from spawning_complete to test_stop are written to $BENCH_LOCUST_OUT.
"""

from __future__ import annotations

import json
import os
import random
import resource
import time

from locust import FastHttpUser, constant, events, task

TOKENS = json.loads(os.environ["BENCH_LOCUST_TOKENS"])
OUT = os.environ["BENCH_LOCUST_OUT"]
STATIC_PATH = os.environ.get("BENCH_LOCUST_STATIC_PATH", "/static.txt")
PRESETS = ("fast", "medium", "slow", "veryfast", "slower")
_mark: dict[str, float] = {}
_count = [0, 0]  # requests, failures (counted by a request listener: ~0.2 us each)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@events.request.add_listener
def _on_request(exception: object = None, **_kw: object) -> None:
    _count[0] += 1
    if exception is not None:
        _count[1] += 1


@events.spawning_complete.add_listener
def _start(**_kw: object) -> None:
    # Steady state only: from the moment every user runs (Locust's start-up cost is excluded).
    if "t0" not in _mark:
        _mark.update(cpu0=_cpu(), t0=time.perf_counter(), n0=_count[0], f0=_count[1])


@events.test_stop.add_listener
def _stop(**_kw: object) -> None:
    with open(OUT, "w") as f:
        json.dump(
            {
                "cpu_s": _cpu() - _mark["cpu0"],
                "wall_s": time.perf_counter() - _mark["t0"],
                "requests": _count[0] - _mark["n0"],
                "failures": _count[1] - _mark["f0"],
                "total_requests": _count[0],
            },
            f,
        )


class TaskForgeUser(FastHttpUser):
    wait_time = constant(0)

    def _post(self, body: dict[str, object]) -> None:
        self.client.post(
            "/tasks",
            data=json.dumps(body, separators=(",", ":")).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Bearer " + random.choice(TOKENS),
            },
            name="POST /tasks",
        )

    @task(10)
    def health(self) -> None:
        self.client.get("/health")

    @task(5)
    def metrics(self) -> None:
        self.client.get("/metrics")

    @task(30)
    def pdf(self) -> None:
        self._post(
            {
                "type": "generate-pdf",
                "payload": {"url": f"https://example.com/report/{random.randrange(1_000_000)}"},
            }
        )

    @task(25)
    def video(self) -> None:
        self._post(
            {
                "type": "compress-video",
                "payload": {
                    "videoUrl": f"https://example.com/videos/{random.randrange(1_000_000)}.mov",
                    "format": "mp4",
                    "bitrate": f"{random.randrange(500, 2001, 100)}k",
                    "preset": random.choice(PRESETS),
                },
            }
        )

    @task(35)
    def image(self) -> None:
        self._post(
            {
                "type": "resize-image",
                "payload": {
                    "imageUrl": f"https://example.com/images/{random.randrange(1_000_000)}.jpg",
                    "width": random.randint(200, 1200),
                    "height": random.randint(150, 900),
                },
            }
        )


class StaticUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def static(self) -> None:
        self.client.get(STATIC_PATH)
