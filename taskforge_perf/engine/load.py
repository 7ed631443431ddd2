"""The load of one shard: set up, follow the plan with the drivers, drain, clean up.

``run_load`` is the body of ``LoadTester.run`` for one process (moved out of ``tester.py``). With a
``ShardLink`` on the tester (a worker of a multi-process or Dask run) it runs one shard: its clock
is the parent's, it waits for the common load start, takes its share of the plan, streams its rows
to the shared run folder's parts and leaves the assembly of the Run to the parent.
"""

from __future__ import annotations

import asyncio
import gc
import random
from typing import TYPE_CHECKING, Any

import aiohttp
import polars as pl

from taskforge_perf.engine.assemble import finish_run, run_meta
from taskforge_perf.engine.auth import AuthClient
from taskforge_perf.engine.clock import Clock
from taskforge_perf.engine.health import HealthProbe
from taskforge_perf.engine.http import DriverState, HttpDriver
from taskforge_perf.engine.lanes import GroupSetup
from taskforge_perf.engine.monitor import Monitor
from taskforge_perf.engine.recorder import HttpRecorder, LiveCounters, WsRecorder, autoflush
from taskforge_perf.engine.run_warnings import add_fault_meta
from taskforge_perf.engine.sessions import SessionDriver
from taskforge_perf.engine.setup import check_reachable, make_clients, open_folder, setup_users, start_ws
from taskforge_perf.engine.sidecars import Sidecars
from taskforge_perf.plan import StressPlan
from taskforge_perf.results import Run
from taskforge_perf.threshold_eval import ThresholdWatch
from taskforge_perf.thresholds import Threshold

if TYPE_CHECKING:
    from taskforge_perf.engine.tester import LoadTester

#: How often abort-on-fail thresholds are checked during a run.
WATCH_INTERVAL_S = 0.25
#: How often long-lived objects are moved out of the collector's generations during a load. At
#: 10,000 sockets every socket that got a message since the last freeze holds a few new objects of
#: websockets' parser: 2 s let 13-27k of them pile up (generation-1 passes of 12-34 ms); 0.5 s keeps
#: the passes under ~6 ms (no cyclic garbage was found in those passes: collected=0).
FREEZE_EVERY_S = 0.5
#: The youngest generation is also collected this often: its size follows time, not the allocation
#: count (objects freed from older generations lower the count), and at 10,000 sockets 0.1-0.3 s
#: of young objects took up to 5-8 ms per pass.
YOUNG_EVERY_S = 0.05


async def run_load(
    self: LoadTester,
    plan: StressPlan,
    name: str,
    checks: tuple[Threshold, ...] = (),
    wait_for_tasks: float = 0.0,
    save_to: Any = None,
) -> Run | None:
    """Run the plan in this process; the Run (None for a shard: its parent assembles the Run)."""
    link, shard = self._link, self._shard
    clock = link.clock() if link is not None else Clock()
    folder = open_folder(self, plan, name, clock, save_to) if link is None else None
    counters = self.counters = LiveCounters()
    worker = shard.index
    parts = folder.parts if folder is not None else self._parts_dir
    recorder = HttpRecorder(worker=worker, spill_dir=parts)
    ws_recorder = WsRecorder(worker=worker, spill_dir=parts)
    if link is not None:  # every shard writes its own part files into the shared folder
        recorder.prefix, ws_recorder.prefix = f"events-w{worker}", f"ws_events-w{worker}"
        self._shard_result = (None, None, None, recorder, ws_recorder)  # flushed even on failure
    side = Sidecars(
        self.metrics_port,
        self.target.metrics_url if worker == 0 else None,  # one scraper per run
        clock,
        recorder,
        counters,
        self.monitor_interval,
        timeout=min(self.target.request_timeout, 5.0),  # a hung /metrics never holds the run's end
        ssl=self.ssl_context,
    )
    rng = random.Random(self.seed if shard.count == 1 or self.seed is None else self.seed * 1009 + worker)
    in_flight = max(1, shard.share(self.max_in_flight)) if shard.count > 1 else self.max_in_flight
    connector, fast, timeout = make_clients(self, plan, in_flight)
    stopped = "completed"
    gc_keeper: asyncio.Future[None] | None = None
    cancelled = False
    setup_s = 0.0
    ready: int | None = None
    load_start_ns = load_end_ns = 0
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        raise_for_status=False,
        skip_auto_headers=("User-Agent",),
    ) as session:
        # aiohttp silently retries an idempotent request once when a kept-alive connection
        # fails; a load tester must record that failure instead. No public switch exists.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        state = DriverState()
        auth = AuthClient(
            session,
            self.target.base_url,
            self.users,
            recorder,
            counters,
            clock,
            lambda: state.phase,
        )
        driver = HttpDriver(
            session,
            self.target.base_url,
            self.mix,
            auth,
            lambda: self.users[0],
            recorder,
            counters,
            clock,
            rng,
            max_in_flight=in_flight,
            recent_tasks=self.recent_tasks,
            state=state,
            fast=fast,
            honor_retry_after=self.honor_retry_after,
        )
        self._driver = driver
        self._ws_driver = None
        group_setup = GroupSetup(self.groups, self.target, self.http_client, self.ssl_context)
        sess: SessionDriver | None = None
        starts: list[float] = []

        def remaining(elapsed: float) -> float:
            lvl = plan.at(min(max(elapsed, 0.0), plan.duration - 1e-9))
            return lvl.remaining_in_phase if lvl is not None else 0.0

        health = HealthProbe(
            clock,
            driver.lateness,
            interval=self.monitor_interval,
            phase=lambda: state.phase,
            in_flight=lambda: counters.in_flight,
        )
        listeners = [link.listener] if link is not None else list(self.listeners)
        monitor = Monitor(
            listeners + side.listeners,
            clock,
            counters,
            recorder,
            state,
            interval=self.monitor_interval,
            planned_s=plan.duration,
            load_start=lambda: starts[0] if starts else None,
            phase_remaining=remaining,
            health=health,
        )
        monitor_task = asyncio.ensure_future(monitor.run()) if monitor.listeners else None
        flusher = asyncio.ensure_future(autoflush((recorder, ws_recorder))) if parts is not None else None
        abort = asyncio.Event()
        breach: list[Threshold] = []
        watched = [t for t in checks if t.abort_on_fail]
        if link is not None:
            task = asyncio.current_task()
            assert task is not None
            link.attach(abort, task.cancel)
        try:
            state.phase = "setup"
            await check_reachable(self, session, recorder, clock)
            self.metrics_endpoint = await side.start()  # Prometheus endpoint, target scrapes
            ready = await setup_users(self, auth, counters)
            setup_s = clock.seconds()
            logged_in = [u for u in self.users if u.access is not None]
            driver.pick_user = self.assignment(logged_in, rng)
            await group_setup.start(driver, logged_in, self.assignment, rng)
            sess = (
                SessionDriver(self._sessions, plan, driver, auth, ws_recorder, self.target, rng)
                if self._sessions is not None
                else None
            )
            await driver.preopen(plan)  # open-model connections open before the schedule's clock
            health.prepare()  # nothing slow (9-14 ms here) between the load's start and its arrivals
            if link is not None:  # every shard starts its load at the same instant
                load_start_ns = await link.ready(setup_s, clock)
            if self._wants_ws(plan):
                start_ws(self, plan, auth, logged_in, ws_recorder, counters, clock, rng, driver)
            # Objects alive now (imports, setup, the recorder's column lists) leave the
            # collector's generations for the load, and so do those that survive a few seconds
            # (sockets, task records): no 10-100 ms collections that walk them again and again.
            gc.freeze()
            gc_keeper = asyncio.ensure_future(_freeze_survivors())
            if link is None:
                load_start_ns = clock.now()
            starts.append(load_start_ns / 1e9)
            driver.end_ns = load_start_ns + int(plan.duration * 1e9)
            if sess is not None:
                sess.start(load_start_ns)
            health.start()
            if folder is not None:
                folder.write_meta({**self._folder_meta, "stopped": "running", "load_start_ns": load_start_ns})
            watch_task = (
                asyncio.ensure_future(
                    _watch(watched, plan, recorder, ws_recorder, clock, load_start_ns, abort, breach, health)
                )
                if watched
                else None
            )
            try:
                await follow(self, plan, driver, clock, load_start_ns, abort)
            finally:
                if watch_task is not None:
                    watch_task.cancel()
                    await asyncio.gather(watch_task, return_exceptions=True)
            if breach:
                stopped = f"aborted: {breach[0]}"
            elif link is not None and link.stop_reason is not None:
                stopped = link.stop_reason

            # The grace runs from the plan's end (the loop may reach this point late).
            grace = self.drain_grace if self.drain_grace is not None else self.target.request_timeout
            await driver.drain(min(driver.end_ns, clock.now()) / 1e9 + grace - clock.seconds())
            load_end_ns = clock.now()
            if wait_for_tasks and self._ws_driver is not None and not breach:
                state.phase = "teardown"  # no request is sent; the sockets stay open
                await self._ws_driver.wait_for_tasks(wait_for_tasks)
        except asyncio.CancelledError:
            stop = link.stop_reason if link is not None else None
            cancelled, stopped = True, self._stop_reason or stop or "cancelled"
            load_end_ns = load_end_ns or clock.now()
            await asyncio.shield(driver.drain(0.5))
        finally:
            await health.stop()
            state.phase = "teardown"
            if flusher is not None:
                flusher.cancel()
            if gc_keeper is not None:
                gc_keeper.cancel()
            gc.unfreeze()
            state.stopping = True
            if fast is not None:
                fast.close()
            await group_setup.close()
            if monitor_task is not None:
                monitor_task.cancel()
                await asyncio.gather(monitor_task, return_exceptions=True)
                final = monitor.snapshot()
                for listener in monitor.listeners:
                    try:
                        listener(final)
                    except Exception:  # noqa: BLE001 - displays never break a run
                        pass
            if self._ws_driver is not None:  # close frames before logout, also when cancelled
                try:
                    await asyncio.shield(self._ws_driver.close_all(5.0))
                except asyncio.CancelledError:
                    pass
            try:
                await asyncio.shield(asyncio.wait_for(auth.cleanup(), self.target.request_timeout))
            except (TimeoutError, asyncio.CancelledError):
                pass
            await side.stop()  # after the last request: the target's final scrape
    meta = run_meta(
        self, plan, name, clock, counters, driver, auth, stopped, load_start_ns, load_end_ns, setup_s
    )
    meta["generator"] = health.summary()
    driver.preopen_meta(meta)
    meta.update(group_setup.meta(sess))
    add_fault_meta(meta, driver, auth, ready)
    target_metrics = side.finish(meta)
    if link is not None:  # the parent assembles the Run from every shard's parts
        self._shard_result = (meta, health.frame(), target_metrics, recorder, ws_recorder)
        if cancelled:
            raise asyncio.CancelledError
        return None
    run = finish_run(self, folder, meta, recorder, ws_recorder, health.frame(), target_metrics, checks)
    if cancelled:
        raise asyncio.CancelledError
    return run


async def _watch(
    watched: list[Threshold],
    plan: StressPlan,
    recorder: HttpRecorder,
    ws_recorder: WsRecorder,
    clock: Clock,
    t0_ns: int,
    abort: asyncio.Event,
    breach: list[Threshold],
    health: HealthProbe | None = None,
) -> None:
    """Check abort-on-fail thresholds a few times a second; set ``abort`` on a breach.

    Incremental: each check reads only the rows recorded since the last one.
    """
    watch = ThresholdWatch(watched)
    seen = seen_ws = 0
    while not abort.is_set():
        await asyncio.sleep(WATCH_INTERVAL_S)
        events = recorder.since(seen)
        ws_new = ws_recorder.since(seen_ws)
        seen += events.height
        seen_ws += ws_new.height
        watch.add(events.filter(pl.col("t_start") >= t0_ns), ws_new)
        hit = watch.poll(
            elapsed_s=(clock.now() - t0_ns) / 1e9,
            plan=plan,
            generator=health.summary() if watch.needs_generator and health is not None else None,
        )
        if hit is not None:
            breach.append(hit)
            abort.set()


async def follow(
    self: LoadTester,
    plan: StressPlan,
    driver: HttpDriver,
    clock: Clock,
    t0_ns: int,
    abort: asyncio.Event | None = None,
) -> None:
    """Walk the plan's phases back to back, setting levels at each boundary (and on ramps).

    A shard takes its share: every N-th arrival of the open model, its part of the concurrency.
    """
    state = driver.state
    shard = self._shard
    vus: dict[int, asyncio.Task[None]] = {}
    # The plan's t = 0 is the load start, not the run start (setup came first).
    offset = t0_ns / 1e9
    open_task = None
    if plan.model != "closed":
        arrivals = shard.arrivals(plan.arrival_times(shift=offset))
        ends = [offset + b for b in plan.boundaries[1:]] + [offset + plan.duration]
        phases = list(zip(ends, (p.name for p in plan.phases), strict=False))
        open_task = asyncio.ensure_future(driver.open_schedule(arrivals, offset + plan.duration, phases))
    try:
        while not state.stopping:
            t = clock.seconds() - offset
            lvl = plan.at(max(t, 0.0))
            if lvl is None:
                break
            state.phase = lvl.phase.name
            state.think_time = lvl.phase.think_time
            driver.set_level(shard.share(lvl.concurrency or 0), vus)
            if self._ws_driver is not None:
                self._ws_driver.set_count(self._ws_count(lvl.websockets))
            wait = lvl.remaining_in_phase
            if lvl.phase.ramp and lvl.model == "closed":
                wait = min(wait, 0.1)
            if abort is None:
                await asyncio.sleep(max(wait, 0.001))
            else:
                try:
                    await asyncio.wait_for(abort.wait(), max(wait, 0.001))
                    state.stopping = True
                except TimeoutError:
                    pass
    finally:
        state.level = 0
        if open_task is not None:
            if not open_task.done():
                open_task.cancel()
            await asyncio.gather(open_task, return_exceptions=True)


async def _freeze_survivors() -> None:
    """Freeze what survived the last period, so collections only walk young objects.

    Garbage frozen with them (rare: cycles that outlived two collections) is freed at unfreeze.
    """
    every = max(1, round(FREEZE_EVERY_S / YOUNG_EVERY_S))
    n = 0
    while True:
        await asyncio.sleep(YOUNG_EVERY_S)
        n += 1
        if n % every == 0:
            gc.freeze()
        else:
            gc.collect(0)
