"""Load-generator benchmark: the engine against wrk, Locust FastHttpUser and a bare aiohttp loop.

Run from the project root with the project's venv::

    .venv/bin/python benchmarks/bench_engine.py            # full run (~3 min), appends RESULTS.md
    .venv/bin/python benchmarks/bench_engine.py --quick    # smoke check: 2 s runs, 1 repeat

What it does (see benchmarks/README.md):

1. starts its own nginx (installed with apt-get when missing) pinned to core 1, serving a small
   static file and TaskForge-shaped answers (/health, /metrics, /tasks, /auth/*);
2. closed model, 50 connections, generator pinned to core 0, interleaved a, b, c x repeats:
   a. the engine (LoadTester, TaskForge mix, 20 users, full recording; a'. on the aiohttp path),
   b. Locust FastHttpUser (same mix, installed into a throwaway venv, never into the project),
   c. a bare aiohttp loop on uvloop (GET of the static file, no recording);
   d./e. the engine and Locust on the static file alone, f. wrk on it (C, no recording: the floor;
   its CPU-µs per request against the engine's is issue 19's figure, see also bench_cpu.py);
3. the engine's open model at 1k/2k/4k/8k/16k/32k req/s: achieved rate and start lateness;
   then the truth check: both HTTP clients against the reference target with a 20 ms delay;
4. the recorder's bytes per event over 1M synthetic events;
5. prints a table and appends a dated section to benchmarks/RESULTS.md.

Loopback only. nginx and every child are stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RUNNERS = HERE / "_runners.py"
LOCUSTFILE = HERE / "_locustfile.py"
RESULTS = HERE / "RESULTS.md"
GEN_CORE, SERVER_CORE = "0", "1"
STATIC_PATH = "/static.txt"
STATIC_BODY = "hello from nginx, a small static file for the load benchmark\n"

LABELS = {
    "ours": "a. taskforge_perf closed model (TaskForge mix, 20 users, full recording)",
    "ours_aiohttp": 'a\'. the same on the aiohttp path (`http_client="aiohttp"`)',
    "locust": "b. Locust FastHttpUser (same mix, Bearer, generated payload)",
    "bare": "c. bare aiohttp loop on uvloop (GET static file, no recording)",
    "ours_static": "d. taskforge_perf closed model, GET static file only (full recording)",
    "locust_static": "e. Locust FastHttpUser, GET static file only (the FACTS.md anchor)",
    "wrk_static": "f. wrk (C, one thread), GET static file only (no recording: the floor)",
}
#: (ours, theirs) pairs reported as ratios; the first two are the issue's.
RATIOS = [
    ("ours", "locust"),
    ("ours", "bare"),
    ("ours", "ours_aiohttp"),
    ("ours_static", "locust_static"),
    ("ours_static", "bare"),
    ("ours_static", "wrk_static"),
]

_children: list[subprocess.Popen[Any]] = []


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- setup ---------------------------------------------------------------------------------------


def ensure_nginx() -> str:
    """Path of the nginx binary; apt-get install it when missing."""
    found = shutil.which("nginx")
    if found or Path("/usr/sbin/nginx").exists():
        return found or "/usr/sbin/nginx"
    log("nginx missing: apt-get install -y nginx")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "nginx"]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(cmd, env=env, capture_output=True, check=True)
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise SystemExit("nginx could not be installed")
    return found


def ensure_locust(venv: Path) -> Path | None:
    """The locust executable of a throwaway venv (created and filled with pip when missing)."""
    exe = venv / "bin" / "locust"
    if exe.exists():
        return exe
    log(f"creating {venv} and installing locust there (not in the project)")
    py = shutil.which("python3") or "python3"
    try:
        subprocess.run([py, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "locust"], check=True, capture_output=True
        )
    except subprocess.CalledProcessError as exc:
        log(f"locust install failed: {exc.stderr!r:.400}")
        return None
    return exe if exe.exists() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_jwt(sub: str) -> str:
    """A real HS256 JWT with exp = now + 1 day (the engine reads exp to plan refreshes)."""
    import jwt  # PyJWT, already in the project's environment

    now = int(time.time())
    key = "bench-secret-of-at-least-32-bytes!"
    return str(jwt.encode({"sub": sub, "iat": now, "exp": now + 86_400}, key, algorithm="HS256"))


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    types {{ text/plain txt; }}
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {d}/www;
        location = {static} {{ }}
        location = /health {{ return 200 '{{"status":"ok"}}'; }}
        location = /metrics {{ default_type text/plain; return 200 'tasks_created_total 0\\n'; }}
        # $request_id: 32 random hex digits per request, so task ids are unique (not uuid-shaped).
        location = /tasks {{ return 202 '{{"success":true,"taskId":"$request_id"}}'; }}
        location = /auth/signup {{ return 201 '{auth}'; }}
        location = /auth/login {{ return 200 '{auth}'; }}
        location = /auth/refresh {{ return 200 '{auth}'; }}
        location = /auth/logout {{ return 200 '{{"success":true}}'; }}
    }}
}}
"""


class Nginx:
    """Our own nginx instance (daemon off, one worker) pinned to the server core."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        d = self.dir
        (d / "www").mkdir()
        (d / "tmp").mkdir()
        (d / "www" / STATIC_PATH.lstrip("/")).write_text(STATIC_BODY)
        os.chmod(d, 0o755)  # the worker runs as an unprivileged user when we are root
        for p in (d / "www", d / "tmp"):
            os.chmod(p, 0o755)
        auth = json.dumps(
            {"success": True, "accessToken": make_jwt("bench-user"), "refreshToken": "r"},
            separators=(",", ":"),
        )
        conf = d / "nginx.conf"
        conf.write_text(NGINX_CONF.format(d=d, port=self.port, static=STATIC_PATH, auth=auth))
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, self.binary, "-c", str(conf), "-p", str(d)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _children.append(self.proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise SystemExit(f"nginx exited ({self.proc.returncode}): {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nginx did not start listening within 10 s")

    def pids(self) -> list[int]:
        """The master and its workers."""
        if self.proc is None:
            return []
        pids = [self.proc.pid]
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            pids += [int(k) for k in kids]
        except OSError:
            pass
        return pids

    def cpu_s(self) -> float:
        """User+sys CPU seconds of nginx's processes so far."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return total / tick

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown of master + workers
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- contenders ----------------------------------------------------------------------------------


def run_child(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Run one pinned child to completion (killed on timeout); returns stdout, stderr."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _children.append(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"timed out after {timeout:.0f} s: {cmd[:6]} ... {err[-800:]}") from None
    finally:
        _children.remove(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {cmd[:6]} ...\n{err[-2000:]}")
    return out, err


def run_py(kind: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = ["taskset", "-c", GEN_CORE, sys.executable, str(RUNNERS), kind, json.dumps(args)]
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as store:  # run folders: not data/runs
        out, _ = run_child(cmd, timeout, env=dict(os.environ, TASKFORGE_PERF_RUNS=store))
    return dict(json.loads(out.strip().splitlines()[-1]))


def run_locust(
    exe: Path, url: str, duration: float, users: int, work: Path, user_class: str = "TaskForgeUser"
) -> dict[str, Any]:
    prefix = work / f"locust-{time.monotonic_ns()}"
    out_json = Path(str(prefix) + "-cpu.json")
    env = dict(os.environ)
    env.update(
        BENCH_LOCUST_TOKENS=json.dumps([make_jwt(f"user{i}") for i in range(20)]),
        BENCH_LOCUST_OUT=str(out_json),
        BENCH_LOCUST_STATIC_PATH=STATIC_PATH,
        PYTHONUNBUFFERED="1",
    )
    cmd = [
        "taskset",
        "-c",
        GEN_CORE,
        str(exe),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users * 20),
        "--run-time",
        f"{duration:g}s",
        "--host",
        url,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "5",
        "--exit-code-on-error",
        "0",
        user_class,
    ]
    run_child(cmd, duration + 90, env=env)
    with open(str(prefix) + "_stats.csv", newline="") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    agg = rows["Aggregated"]
    mark = json.loads(out_json.read_text())
    n, wall = int(mark["requests"]), float(mark["wall_s"])
    return {
        "requests": n,
        "errors": int(mark["failures"]),
        "duration_s": wall,
        "rps": n / wall,
        "csv_requests": int(agg["Request Count"]),  # whole run, start-up included (cross-check)
        "csv_rps": float(agg["Requests/s"]),
        "cpu_s": mark["cpu_s"],
        "cpu_us_per_req": mark["cpu_s"] / n * 1e6 if n else None,
        "cpu_share": mark["cpu_s"] / wall,
    }


def run_wrk(url: str, seconds: float, conns: int) -> dict[str, Any]:
    """wrk pinned to the generator core: requests/s and CPU-µs per request (its own count)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = ["taskset", "-c", GEN_CORE, "wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    m = re.search(r"(\d+) requests in", out)
    n = int(m.group(1)) if m else 0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": n,
        "duration_s": seconds,
        "rps": n / seconds,
        "cpu_s": cpu,
        "cpu_us_per_req": cpu / n * 1e6 if n else None,
        "cpu_share": cpu / seconds,
        "errors": int(errors.group(1)) if errors else 0,
    }


def measure(name: str, fn: Any, server: Nginx) -> dict[str, Any]:
    s0 = server.cpu_s()
    res = dict(fn())
    dur = res["duration_s"]
    res["server_cpu_share"] = (server.cpu_s() - s0) / dur if dur else None
    log(
        f"  {name}: {res['rps']:,.0f} req/s, {res['cpu_us_per_req'] or 0:,.0f} CPU-us/req, "
        f"gen CPU {res['cpu_share']:.0%}, nginx CPU {res['server_cpu_share'] or 0:.0%}, "
        f"errors {res.get('errors')}"
    )
    return res


# --- report --------------------------------------------------------------------------------------


def med(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def fmt(x: float | None, spec: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, spec)


def machine() -> dict[str, Any]:
    import aiohttp
    import polars
    import uvloop

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": nproc,
        "cpu": model,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": uvloop.__version__,
        "polars": polars.__version__,
    }


def build_report(
    closed: dict[str, list[dict[str, Any]]],
    open_rows: list[dict[str, Any]],
    rec: dict[str, Any] | None,
    info: dict[str, Any],
    truth: dict[str, Any] | None = None,
) -> str:
    lines: list[str] = []
    add = lines.append
    add(f"## Engine benchmark — {info['date']}")
    add("")
    add(
        f"Machine: {info['nproc']} cores, {info['cpu']}; Python {info['python']}, aiohttp "
        f"{info['aiohttp']}, uvloop {info['uvloop']}, Polars {info['polars']}, Locust "
        f"{info.get('locust', 'n/a')}. Load average {info['load_before']} before, "
        f"{info['load_after']} after. The machine is shared: figures are medians of "
        f"{info['repeats']} interleaved runs (a, b, c, a, b, c, ...), {info['duration']:g} s each, "
        f"50 connections; nginx 1 worker pinned to core {SERVER_CORE}, generator pinned to core "
        f"{GEN_CORE}. Script: `benchmarks/bench_engine.py`{' --quick' if info['quick'] else ''}."
    )
    add("")
    add("### Closed model")
    add("")
    add("| generator | req/s | CPU-µs/request | generator CPU | nginx CPU | errors |")
    add("|---|---|---|---|---|---|")
    meds: dict[str, dict[str, float | None]] = {}
    for key, label in LABELS.items():
        rs = closed.get(key) or []
        if not rs:
            if key in info["contenders"]:
                add(f"| {label} | failed | | | | |")
            continue
        m = {
            k: med([r.get(k) for r in rs]) for k in ("rps", "cpu_us_per_req", "cpu_share", "server_cpu_share")
        }
        meds[key] = m
        errs = [r.get("errors") for r in rs]
        add(
            f"| {label} | {fmt(m['rps'])} | {fmt(m['cpu_us_per_req'])} | "
            f"{fmt(m['cpu_share'], '.0%')} | {fmt(m['server_cpu_share'], '.0%')} | {errs} |"
        )
    add("")
    for mine, other in RATIOS:
        if mine in meds and other in meds:
            per_round = [
                a["rps"] / b["rps"] for a, b in zip(closed[mine], closed[other], strict=False) if b.get("rps")
            ]
            ratio_cpu = [
                a["cpu_us_per_req"] / b["cpu_us_per_req"]
                for a, b in zip(closed[mine], closed[other], strict=False)
                if a.get("cpu_us_per_req") and b.get("cpu_us_per_req")
            ]
            add(
                f"- {mine} / {other}: req/s x{fmt(med(per_round), '.2f')}, CPU-µs/request "
                f"x{fmt(med(ratio_cpu), '.2f')} (median of per-round ratios; per round: "
                f"{', '.join(f'{x:.2f}' for x in per_round)})"
            )
    add("")
    if open_rows:
        add("### Open model (the engine, TaskForge mix, max_in_flight 1000)")
        add("")
        add(
            "| rate | planned | rows | achieved req/s | late (>2 ms) | cap hits | dropped | "
            "lateness p50 ms | p99 ms (whole run) | p99 first s | p99 steady | max ms | "
            "pre-opened / on demand | generator CPU |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in open_rows:
            if "failed" in r:
                add(f"| {r['rate']:,} | failed: {r['failed']} | | | | | | | | | | | | |")
                continue
            ph, lt = r["phase"], r["late_ms"]
            first, steady = r.get("late_ms_first_s") or {}, r.get("late_ms_steady") or {}
            pre = r.get("preopen") or {}
            add(
                f"| {r['rate']:,} | {ph.get('planned', 0):,} | {r['requests']:,} | "
                f"{fmt(r['rps'])} | {ph.get('late', 0):,} | {ph.get('cap_hits', 0):,} | "
                f"{ph.get('dropped', 0):,} | {fmt(lt['p50'], '.2f')} | {fmt(lt['p99'], '.2f')} | "
                f"{fmt(first.get('p99'), '.2f')} | {fmt(steady.get('p99'), '.2f')} | "
                f"{fmt(lt['max'], '.1f')} | {pre.get('opened', '-')} / {pre.get('on_demand', '-')} | "
                f"{fmt(r['cpu_share'], '.0%')} |"
            )
        add("")
        add(
            "Achieved = load rows / the run's load duration (schedule + drain); lateness = "
            "t_start - t_intended over load rows: the whole run, the first second of the schedule "
            "and the steady state (the rest) separately."
        )
        add("")
    if truth is not None:
        add("### Truth check (both HTTP clients, reference target with a fixed 20 ms delay)")
        add("")
        add(
            f'`ReferenceTarget(latency="*=20ms", hash_iterations=1000)` pinned to core '
            f"{SERVER_CORE}, TaskForge mix, {truth['n_rounds']} interleaved rounds of "
            f"{truth['duration']:g} s per client and mode: **open** = the same schedule for both "
            f"clients ({truth['rate']:,} req/s; the server sees the same traffic, so a difference "
            f"is measurement), **closed** = {truth['concurrency']} VUs (a faster client also "
            "sends in tighter bursts, which the server queues). Latency = t_end - t_start (ms)."
        )
        add("")
        add("| mode | client | rows | errors | p50 | p90 | p99 | mean |")
        add("|---|---|---|---|---|---|---|---|")
        for mode, cl in truth["modes"].items():
            for name in ("aiohttp", "fast"):
                c = cl[name]
                add(
                    f"| {mode} | {name} | {c['rows']:,} | {c['errors']} | {c['p50']:.2f} | "
                    f"{c['p90']:.2f} | {c['p99']:.2f} | {c['mean']:.2f} |"
                )
        add("")
        for mode, cl in truth["modes"].items():
            d50 = cl["fast"]["p50"] / cl["aiohttp"]["p50"] - 1
            dmean = cl["fast"]["mean"] / cl["aiohttp"]["mean"] - 1
            eps = ", ".join(
                f"{k} {v:.2f}/{cl['fast']['per_endpoint_p50'].get(k, float('nan')):.2f}"
                for k, v in cl["aiohttp"]["per_endpoint_p50"].items()
            )
            add(
                f"- {mode}: fast vs aiohttp p50 {d50:+.1%}, mean {dmean:+.1%} (goal: within 2% "
                f"with the same traffic); per endpoint p50 aiohttp/fast ms: {eps}"
            )
        rs = [r for r in truth["rounds"] if r["mode"] == "open"]
        per = [f"{b['p50'] / a['p50'] - 1:+.1%}" for a, b in zip(rs[::2], rs[1::2], strict=False)]
        add(f"- open, per round p50 fast vs aiohttp: {', '.join(per)}")
        add("")
    if rec is not None:
        add(
            f"### Recorder ({rec['n']:,} synthetic events, task id (uuid4 string) on "
            f"{rec['task_id_share']:.0%} of rows)"
        )
        add("")
        goal = "meets" if rec["bytes_per_event"] <= 64 else "**above**"
        add(
            f"- flushed frame: **{rec['bytes_per_event']:.1f} B/event** ({goal} the 64 B goal); "
            f"{rec['bytes_per_event_without_task_id']:.1f} B/event without the task_id column"
        )
        if rec.get("arrow_bytes_per_event") is not None:
            add(
                f"- but `estimated_size()` leaves out the 16-byte views of String columns: the "
                f"frame really holds **{rec['arrow_bytes_per_event']:.1f} B/event** (Arrow export, "
                f"string_view layout; task_id {rec['arrow_task_id_bytes_per_event']:.1f} B/event)"
            )
        cols = ", ".join(f"{k} {v:.1f}" for k, v in rec["bytes_per_column"].items())
        add(f"- per column (B/event): {cols}")
        add(
            f"- `HttpRecorder.record`: {rec['record_us']:.2f} µs per call (loop included; the same "
            f"loop calling a no-op takes {rec['loop_and_call_overhead_us']:.2f} µs); final "
            f"`frame()` {rec['final_frame_ms']:.0f} ms"
        )
        add("")
    return "\n".join(lines) + "\n"


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 s per measurement, 1 repeat")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None, help="closed-model seconds per run")
    ap.add_argument("--open-duration", type=float, default=None)
    ap.add_argument("--rates", default="1000,2000,4000,8000,16000,32000")
    ap.add_argument("--events", type=int, default=None, help="recorder events (default 1M)")
    ap.add_argument("--locust-venv", default="/tmp/bench-locust-venv")
    ap.add_argument(
        "--skip",
        default="",
        help="comma list of: ours,ours_aiohttp,locust,bare,"
        "ours_static,locust_static,wrk_static,open,truth,recorder",
    )
    ap.add_argument("--gen-core", default="0", help="core for the generator (taskset -c)")
    ap.add_argument("--server-core", default="1", help="core for nginx (taskset -c)")
    ap.add_argument("--no-append", action="store_true", help="print only, do not touch RESULTS.md")
    a = ap.parse_args()
    global GEN_CORE, SERVER_CORE
    GEN_CORE, SERVER_CORE = a.gen_core, a.server_core
    quick = a.quick
    repeats = a.repeats or (1 if quick else 3)
    duration = a.duration or (2.0 if quick else 10.0)
    open_duration = a.open_duration or (2.0 if quick else 5.0)
    n_events = a.events or 1_000_000
    skip = set(filter(None, a.skip.split(",")))
    rates = [int(r) for r in a.rates.split(",") if r]
    if os.cpu_count() is None or (os.cpu_count() or 0) < 2:
        log("warning: fewer than 2 cores; pinning generator and server to separate cores fails")

    info: dict[str, Any] = machine()
    info.update(
        date=dt.date.today().isoformat(),
        quick=quick,
        contenders=[],
        repeats=repeats,
        duration=duration,
        load_before="/".join(f"{x:.2f}" for x in os.getloadavg()),
    )
    closed: dict[str, list[dict[str, Any]]] = {k: [] for k in LABELS}
    open_rows: list[dict[str, Any]] = []
    rec: dict[str, Any] | None = None
    truth: dict[str, Any] | None = None
    work = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    server: Nginx | None = None
    try:
        want_locust = not {"locust", "locust_static"} <= skip
        locust = ensure_locust(Path(a.locust_venv)) if want_locust else None
        if locust is not None:
            v = subprocess.run([str(locust), "--version"], capture_output=True, text=True)
            info["locust"] = (v.stdout or v.stderr).split()[1] if (v.stdout or v.stderr) else "?"
        server = Nginx(ensure_nginx())
        server.start()
        log(f"nginx on {server.url} (pids {server.pids()}), pinned to core {SERVER_CORE}")
        url = server.url
        timeout = duration + 120
        engine_args = {"url": url, "duration": duration, "concurrency": 50}
        aio_args = dict(engine_args, http_client="aiohttp")
        contenders: dict[str, Any] = {
            "ours": lambda: run_py("engine", engine_args, timeout),
            "ours_aiohttp": lambda: run_py("engine", aio_args, timeout),
            "locust": lambda: run_locust(locust, url, duration, 50, work),
            "bare": lambda: run_py(
                "bare",
                {"url": url, "path": STATIC_PATH, "duration": duration, "concurrency": 50},
                timeout,
            ),
            "ours_static": lambda: run_py("engine", dict(engine_args, static_path=STATIC_PATH), timeout),
            "locust_static": lambda: run_locust(locust, url, duration, 50, work, "StaticUser"),
            "wrk_static": lambda: run_wrk(url + STATIC_PATH, duration, 50),
        }
        for key in list(contenders):
            if (
                key in skip
                or (key.startswith("locust") and locust is None)
                or (key == "wrk_static" and shutil.which("wrk") is None)
            ):
                del contenders[key]
        info["contenders"] = list(contenders)
        for i in range(repeats):
            log(f"closed model, round {i + 1}/{repeats}")
            for key, fn in contenders.items():
                try:
                    closed[key].append(measure(key, fn, server))
                except RuntimeError as exc:
                    log(f"  {key} failed: {exc}")
        if "open" not in skip:
            for rate in rates:
                log(f"open model at {rate:,} req/s for {open_duration:g} s")
                try:
                    r = run_py(
                        "engine",
                        {"url": url, "duration": open_duration, "rate": rate},
                        open_duration + 120,
                    )
                except RuntimeError as exc:
                    log(f"  failed: {exc}")
                    open_rows.append({"rate": rate, "failed": str(exc)[:80]})
                    continue
                r["rate"] = rate
                open_rows.append(r)
                log(
                    f"  achieved {r['rps']:,.0f} req/s, planned {r['phase'].get('planned')}, "
                    f"late {r['phase'].get('late')}, lateness p50/p99/max "
                    f"{r['late_ms']['p50']:.2f}/{r['late_ms']['p99']:.2f}/"
                    f"{r['late_ms']['max']:.1f} ms, CPU {r['cpu_share']:.0%}, "
                    f"errors {r['errors']}"
                )
        if "truth" not in skip:
            log("truth check: both clients against the reference target with a 20 ms delay")
            t_dur = 2.0 if quick else 5.0
            try:
                truth = run_py(
                    "truth", {"rounds": repeats, "duration": t_dur, "server_core": SERVER_CORE}, 900
                )
                truth.update(n_rounds=repeats, duration=t_dur)
                for mode, c in truth["modes"].items():
                    log(f"  {mode}: p50 aiohttp {c['aiohttp']['p50']:.2f} ms, fast {c['fast']['p50']:.2f} ms")
            except RuntimeError as exc:
                log(f"  truth check failed: {exc}")
        if "recorder" not in skip:
            log(f"recorder: {n_events:,} events")
            rec = run_py("recorder", {"n": n_events}, 600)
            log(f"  {rec['bytes_per_event']:.1f} B/event, {rec['record_us']:.2f} us/record")
    finally:
        if server is not None:
            server.stop()
        for p in list(_children):
            if p.poll() is None:
                p.kill()
                p.wait(5)
        shutil.rmtree(work, ignore_errors=True)
    info["load_after"] = "/".join(f"{x:.2f}" for x in os.getloadavg())
    report = build_report(closed, open_rows, rec, info, truth)
    print(report)
    raw = {"closed": closed, "open": open_rows, "recorder": rec, "truth": truth, "info": info}
    Path(tempfile.gettempdir(), "bench_engine_last.json").write_text(json.dumps(raw, indent=1))
    if not a.no_append:
        existing = RESULTS.read_text() if RESULTS.exists() else ""
        with RESULTS.open("a") as f:
            if existing and not existing.endswith("\n\n"):
                f.write("\n" if existing.endswith("\n") else "\n\n")
            f.write(report)
        log(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
