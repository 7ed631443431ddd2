"""Throughput of the reference target on ONE core: GET /health and POST /tasks driven by wrk.

The target runs pinned to core 1 (every thread), wrk pinned to core 0, 50 connections, ~10 s per
endpoint. Prints req/s and appends a dated section to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_target.py [--duration 10] [--connections 50] [--no-write]

Installs wrk with apt-get when it is missing. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from taskforge_perf.target import ReferenceTarget

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TARGET_CORE, WRK_CORE = 1, 0


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    cmd = ["apt-get", "install", "-y", "wrk"]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(cmd, check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed and apt-get could not install it")
    return found


def pin(pid: int, core: int) -> None:
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {core})


def run_wrk(wrk: str, url: str, seconds: int, conns: int, script: str | None) -> dict[str, float]:
    cmd = ["taskset", "-c", str(WRK_CORE), wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    p50 = re.search(r"50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    return {
        "rps": rps,
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "p50": p50.group(1) if p50 else "?",  # type: ignore[dict-item]
        "p99": p99.group(1) if p99 else "?",  # type: ignore[dict-item]
        "errors": errors.group(0) if errors else "",  # type: ignore[dict-item]
    }


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: one for the target, one for wrk")
    wrk = ensure_wrk()
    results: dict[str, dict[str, float]] = {}
    with ReferenceTarget(hash_iterations=1000) as target, tempfile.TemporaryDirectory() as tmp:
        pin(target.pid, TARGET_CORE)
        req = urllib.request.Request(
            target.base_url + "/auth/signup",
            method="POST",
            data=json.dumps({"email": "bench@example.com", "password": "benchpassword1"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        token = json.loads(urllib.request.urlopen(req, timeout=10).read())["accessToken"]
        lua = Path(tmp) / "post_tasks.lua"
        body = json.dumps({"type": "generate-pdf", "payload": {"url": "https://example.com"}})
        lua.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body)}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        )
        run_wrk(wrk, target.base_url + "/health", 2, args.connections, None)  # warm-up
        results["GET /health"] = run_wrk(
            wrk, target.base_url + "/health", args.duration, args.connections, None
        )
        results["POST /tasks"] = run_wrk(
            wrk, target.base_url + "/tasks", args.duration, args.connections, str(lua)
        )
    for name, r in results.items():
        print(
            f"{name:12s} {r['rps']:10.0f} req/s  p50 {r['p50']}  p99 {r['p99']}  "
            f"non-2xx {r['non2xx']:.0f} {r['errors']}"
        )
    if not args.no_write:
        write(results, args)
    ok = results["GET /health"]["rps"] >= 3000
    print("GET /health >= 3,000 req/s on one core:", "yes" if ok else "NO")
    return 0 if ok else 1


def write(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"## Reference target throughput — {now}",
        "",
        f"Machine: {os.cpu_count()} cores (`nproc`), {cpu_model()}; Python "
        f"{platform.python_version()}; target pinned to core {TARGET_CORE}, wrk (1 thread, "
        f"{args.connections} connections, {args.duration} s) pinned to core {WRK_CORE}; "
        "`benchmarks/bench_target.py`.",
        "",
        "| endpoint | req/s | p50 | p99 | non-2xx |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['rps']:,.0f} | {r['p50']} | {r['p99']} | {r['non2xx']:.0f} |")
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n")
    with RESULTS.open("a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
