"""Memory stays flat during a run: the 30 s version of ``benchmarks/bench_soak.py``.

The benchmark runs in its own process (its RSS is the tester's alone) at 300 req/s with 50
sockets. The check is the least-squares slope of RSS over the second half of the load, per recorded
row: ~160-230 B/row when every row stays in memory (``--mode memory``, the old default), close to 0
streaming. The WebSocket driver's task memory (bounded, but filling for minutes at this rate) is
capped low here (``--ws-task-cap 2000``, reached within ~8 s) so that it does not hide the rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_soak.py"


@pytest.mark.exclusive  # an RSS slope: another test's load beside it (xdist) skews it
@pytest.mark.timeout(240)
def test_rss_slope_stays_flat_while_rows_stream_to_disk() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--duration",
            "30",
            "--sample",
            "0.5",
            "--settle",
            "0",
            "--no-write",
            "--json",
            "--ws-task-cap",
            "2000",
        ],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["stopped"] == "completed" and r["mode"] == "stream"
    assert r["rows_per_s"] > 500, r  # enough rows for the slope to mean something
    # Wide margin on both sides: streaming measured -5..52 B/row here, in memory 157..234 B/row.
    assert r["bytes_per_row"] < 100, {k: v for k, v in r.items() if k != "samples"}
