"""Locks a worker holds for its whole life, so two workers started at once cannot share a
data folder or a web port.

Checking that a port is free and letting it go leaves a window: two workers started
together both pass, and the second learns otherwise from Faust, after joining the group.
A lock taken with ``flock`` has no window, and the kernel drops it when the process ends,
however it ends, so a crashed worker never leaves one behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from orchestrator.errors import CliError

_held: list[int] = []  # open descriptors: closing one would let its lock go


def hold_data_dir(data_dir: Path) -> None:
    """Lock ``data_dir`` for this worker (RocksDB would refuse the second one only later,
    partition by partition, as it was assigned them)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    owner = _hold(data_dir / ".worker.lock")
    if owner is not None:
        raise CliError(
            f"{data_dir} is in use by another worker ({owner}): give this worker its own folder with"
            " ORCH_DATA_DIR or --data-dir"
        )


def hold_web_port(host: str, port: int) -> None:
    """Lock ``host:port`` among the workers of this machine (see the module's docstring)."""
    name = hashlib.sha256(f"{host}:{port}".encode()).hexdigest()[:16]
    owner = _hold(Path(tempfile.gettempdir()) / f"orchestrator-web-{name}.lock")
    if owner is not None:
        raise port_taken(host, port, owner)


def port_taken(host: str, port: int, by: str) -> CliError:
    """The one line a worker gives for a web port it cannot have, by lock or by bind."""
    return CliError(f"{host}:{port} is taken ({by}): give this worker its own port with ORCH_WEB_PORT or --web-port")


def _hold(path: Path) -> str | None:
    """Take the lock at ``path`` and keep it; None on success (or when another user's file
    cannot even be opened: the port check still runs), else who has it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        return f"worker pid {owner}" if owner.isdigit() else "another worker"
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held.append(fd)
    return None
