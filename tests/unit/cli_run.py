"""``python -m orchestrator ARGS`` as a user runs it, for the unit and the integration tests."""

from __future__ import annotations

import subprocess
import sys


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The command's exit code and output; never raises for a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
