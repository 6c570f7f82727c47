"""Forked worker processes, each sending its results to the parent through its own pipe.

Fork, not spawn: the children read the parent's data (events, raw lines, the loaded
journeys) without pickling or copying them. The parent's objects are frozen while it forks
(``gc.freeze``), so that a collection in a child never walks them: walking writes to each
object's header, which copied the parent's pages into the child one by one (a child parsed
its lines at half speed). Shared by replay's reading and replaying.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

JOIN_S = 5.0  # a child still running this long after the parent is done with it is killed


def fork_each(
    target: Callable[..., None], argsets: Sequence[tuple[Any, ...]]
) -> tuple[list[BaseProcess], list[Connection]]:
    """Start ``target(*args, sender)`` in a child per ``args``; the children and the receiving ends."""
    context = multiprocessing.get_context("fork")
    children: list[BaseProcess] = []
    receivers = []
    gc.freeze()  # the children's collections leave the parent's objects alone (see below)
    try:
        for args in argsets:
            receiver, sender = context.Pipe(duplex=False)
            child = context.Process(target=target, args=(*args, sender), daemon=True)
            child.start()
            sender.close()  # the child holds it now; the parent sees EOF if the child dies
            children.append(child)
            receivers.append(receiver)
    finally:
        gc.unfreeze()  # in the parent only: it goes on as before
    return children, receivers


def reap(children: list[BaseProcess]) -> list[int]:
    """Wait for each child (killing one that hangs); the non-zero exit codes."""
    for child in children:
        child.join(timeout=JOIN_S)
        if child.is_alive():
            child.kill()
            child.join()
    return [child.exitcode for child in children if child.exitcode]
