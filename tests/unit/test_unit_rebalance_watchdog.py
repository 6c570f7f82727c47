"""The rebalance watchdog: which callback is overdue, and the exit it asks for."""

from __future__ import annotations

import threading

from agents.rebalance_watchdog import EXIT_STUCK, Stopwatch, _watch


def test_a_callback_is_overdue_only_past_the_limit_and_only_while_it_runs() -> None:
    watch = Stopwatch(limit_s=120)
    watch.start("revoke", now=1000.0)

    assert watch.overdue(1119.0) is None
    assert watch.overdue(1121.0) == ("revoke", 121.0)
    watch.stop("revoke")
    assert watch.overdue(5000.0) is None


def test_each_phase_is_timed_from_its_own_start() -> None:
    watch = Stopwatch(limit_s=10)
    watch.start("revoke", now=0.0)
    watch.stop("revoke")
    watch.start("assign", now=100.0)

    assert watch.overdue(105.0) is None
    assert watch.overdue(111.0) == ("assign", 11.0)


def test_the_watcher_exits_with_the_stuck_code_once_a_callback_is_overdue() -> None:
    watch = Stopwatch(limit_s=0.05)
    watch.start("revoke", now=0.0)  # long ago on the monotonic clock
    codes: list[int] = []
    watcher = threading.Thread(target=_watch, args=(watch, codes.append), daemon=True)

    watcher.start()
    watcher.join(timeout=10)

    assert codes == [EXIT_STUCK]
    assert not watcher.is_alive()
