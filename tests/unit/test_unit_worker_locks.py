"""The locks a worker holds for its life: its data folder and its web port, one worker each,
also when two are started at the same moment; a worker that dies lets them go."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import locks
from orchestrator.errors import CliError

HOLDER = """
import sys
from pathlib import Path
from orchestrator.cli.locks import hold_data_dir, hold_web_port
hold_data_dir(Path(sys.argv[1])) if sys.argv[2] == "dir" else hold_web_port("127.0.0.1", int(sys.argv[1]))
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def let_go() -> Iterator[None]:
    """Whatever this process took is let go after each test, as the end of a worker would."""
    yield
    while locks._held:
        os.close(locks._held.pop())


def holder(target: str, kind: str) -> subprocess.Popen[str]:
    """Another worker, as far as the locks go: it holds ``target`` until its stdin closes."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, target, kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    return child


def finish(child: subprocess.Popen[str]) -> None:
    child.communicate(timeout=30)  # closes its stdin, so it ends, and both pipes
    assert child.returncode == 0


def test_a_data_folder_in_use_is_refused_with_the_worker_and_the_setting_named(tmp_path: Path) -> None:
    child = holder(str(tmp_path), "dir")
    try:
        with pytest.raises(CliError) as refused:
            locks.hold_data_dir(tmp_path)
    finally:
        finish(child)
    assert str(refused.value) == (
        f"{tmp_path} is in use by another worker (worker pid {child.pid}): give this worker its own folder"
        " with ORCH_DATA_DIR or --data-dir"
    )


def test_a_data_folder_is_free_again_once_its_worker_has_gone(tmp_path: Path) -> None:
    finish(holder(str(tmp_path / "new"), "dir"))
    locks.hold_data_dir(tmp_path / "new")  # no error, and the folder was made


def test_a_web_port_another_worker_holds_is_refused_before_either_listens() -> None:
    child = holder("65001", "port")
    try:
        with pytest.raises(CliError) as refused:
            locks.hold_web_port("127.0.0.1", 65001)
        locks.hold_web_port("127.0.0.1", 65002)  # another port is another lock
    finally:
        finish(child)
    assert str(refused.value).startswith(f"127.0.0.1:65001 is taken (worker pid {child.pid}): ")
    assert "ORCH_WEB_PORT" in str(refused.value)
    locks.hold_web_port("127.0.0.1", 65001)
