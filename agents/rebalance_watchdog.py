"""Workaround: a worker whose rebalance hangs exits, so that its supervisor restarts it.

faust-streaming can hang for good inside a rebalance. Seen in ``make demo`` on a broker
slow to publish a new topic's metadata: ``_on_partitions_revoked`` waited on the commit
in flight (``Consumer.maybe_wait_for_commit_to_finish``), which never finished (the
family of faust issue #402 and its kin). The process stays up and ``/metrics`` answers,
so a liveness probe finds it alive, but it consumes nothing, ever, and ``/ready`` stays
503. A restart is what recovers it, and it loses nothing: offsets past the last commit
are not committed, so those records are read again (at least once; ``decide`` drops
what it has seen by event id) and the tables are recovered from their changelogs.

This module times Faust's two rebalance callbacks (revoke, then assign). Table
recovery runs after them, in a task of its own, and may rightly take minutes on a
big partition, so it is not timed. A daemon thread, which a blocked event loop cannot
stop, checks once a second; when a callback has run longer than the limit
(``ORCH_REBALANCE_STUCK_S``, twice Faust's own session timeout by default) it logs
why and ends the process with :data:`EXIT_STUCK`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faust.app.base import App

log = logging.getLogger(__name__)
EXIT_STUCK = 75  # EX_TEMPFAIL: "try again"; supervisors restart the worker on any failure
CHECK_EVERY_S = 1.0
_WATCH = "_orchestrator_rebalance_watch"  # the Stopwatch, kept on the app


@dataclass
class Stopwatch:
    """Which rebalance callbacks are running, since when (monotonic seconds)."""

    limit_s: float
    running: dict[str, float] = field(default_factory=dict)

    def start(self, phase: str, now: float) -> None:
        self.running[phase] = now

    def stop(self, phase: str) -> None:
        self.running.pop(phase, None)

    def overdue(self, now: float) -> tuple[str, float] | None:
        """The callback that has run longer than the limit, and for how long; None if none."""
        for phase, since in list(self.running.items()):
            if now - since > self.limit_s:
                return phase, now - since
        return None


def install(app: App, limit_s: float, exit_process: Callable[[int], Any] = os._exit) -> Stopwatch | None:
    """Time ``app``'s rebalance callbacks; ``limit_s`` 0 turns the watchdog off."""
    if limit_s <= 0:
        return None
    watch = Stopwatch(limit_s)
    setattr(app, _WATCH, watch)
    _patch_app_class()
    thread = threading.Thread(target=_watch, args=(watch, exit_process), name="rebalance-watchdog", daemon=True)
    thread.start()
    return watch


def _patch_app_class() -> None:
    """Wrap the two callbacks once per process; apps without a stopwatch run them as shipped."""
    if getattr(App, "_orchestrator_rebalance_timed", False):
        return
    App._on_partitions_revoked = _timed("revoke", App._on_partitions_revoked)  # type: ignore[method-assign]
    App._on_partitions_assigned = _timed("assign", App._on_partitions_assigned)  # type: ignore[method-assign]
    App._orchestrator_rebalance_timed = True  # type: ignore[attr-defined]


def _timed(phase: str, callback: Callable[..., Any]) -> Callable[..., Any]:
    async def timed(self: App, *args: Any, **kwargs: Any) -> Any:
        watch: Stopwatch | None = getattr(self, _WATCH, None)
        if watch is None:
            return await callback(self, *args, **kwargs)
        watch.start(phase, time.monotonic())
        try:
            return await callback(self, *args, **kwargs)
        finally:
            watch.stop(phase)

    return timed


def _watch(watch: Stopwatch, exit_process: Callable[[int], Any]) -> None:
    while True:
        time.sleep(min(CHECK_EVERY_S, watch.limit_s / 2))
        stuck = watch.overdue(time.monotonic())
        if stuck is None:
            continue
        phase, seconds = stuck
        log.critical(
            "rebalance stuck: Faust's %s callback has run for %.1f s (limit %.1f s, ORCH_REBALANCE_STUCK_S); "
            "exiting with code %d so the worker is restarted: records since the last commit are read again",
            phase,
            seconds,
            watch.limit_s,
            EXIT_STUCK,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        exit_process(EXIT_STUCK)
        return
