"""The command line as a user runs it: ``python -m taskforge_perf ...`` in a child process."""

from __future__ import annotations

import subprocess
import sys


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run the CLI to its end; its exit code, stdout and stderr (text) are the caller's to check."""
    return subprocess.run(
        [sys.executable, "-m", "taskforge_perf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
