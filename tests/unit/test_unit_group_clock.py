"""The group's inbound clock as a pure function: which workers' entries hold the timer back."""

from __future__ import annotations

import math

from agents.group_clock import FORGET_S, STALE_S, RebalanceStart, entry, lowest, silent

WALL = 1_790_000_000.0


def entries(**by_worker: str) -> dict[bytes, bytes]:
    return {worker.encode(): value.encode() for worker, value in by_worker.items()}


def test_a_worker_not_held_back_publishes_no_clock_that_could_hold_others() -> None:
    assert entry(WALL, WALL) == f"{WALL:.3f} inf"
    assert entry(WALL - 30, WALL) == f"{WALL:.3f} {WALL - 30!r}"
    assert entry(-math.inf, WALL).endswith(" -inf")  # a partition that has not given its first record


def test_a_fresh_entry_of_another_worker_behind_holds_the_clock_back() -> None:
    found = entries(a=entry(WALL - 30, WALL - 1), b=entry(WALL - 2, WALL - 1), me=entry(WALL - 90, WALL - 1))
    assert lowest(WALL, WALL, found, b"me") == (WALL - 30, [])  # its own entry is last tick's: ``local`` wins


def test_entries_that_are_not_held_back_stale_or_garbled_hold_nothing() -> None:
    found = entries(
        free=entry(WALL, WALL),
        stale=entry(WALL - 60, WALL - STALE_S - 0.1),
        garbled="not a clock",
        empty="",
    )
    assert lowest(WALL - 1, WALL, found, b"me") == (WALL - 1, [])


def test_a_worker_that_has_not_read_its_first_record_holds_everyone() -> None:
    assert lowest(WALL, WALL, entries(new=entry(-math.inf, WALL)), b"me")[0] == -math.inf


def test_entries_of_workers_long_gone_are_given_to_be_deleted() -> None:
    found = entries(gone=entry(WALL - 600, WALL - FORGET_S - 1), stale=entry(WALL - 9, WALL - 10))
    assert lowest(WALL, WALL, found, b"me") == (WALL, [b"gone"])


def test_a_stale_entry_of_a_silent_worker_holds_at_when_it_was_published() -> None:
    found = entries(dead=entry(WALL - 9, WALL - 9), behind=entry(WALL - 60, WALL - 8))
    assert lowest(WALL, WALL, found, b"me", held_by_silent={b"dead"}) == (WALL - 9, [])  # it read nothing since
    assert lowest(WALL, WALL, found, b"me", held_by_silent={b"dead", b"behind"}) == (WALL - 60, [])
    assert lowest(WALL, WALL, found, b"me") == (WALL, [])


def test_a_silent_worker_holds_until_a_rebalance_that_began_after_it_went_stale_or_for_hold_s() -> None:
    found = entries(dead=entry(WALL - 9, WALL - 9), fresh=entry(WALL, WALL - 1), me=entry(WALL, WALL - 30))
    went_stale = WALL - 9 + STALE_S
    assert silent(WALL, found, b"me", rebalance_after=went_stale - 1, hold_s=60) == {b"dead"}
    assert silent(WALL, found, b"me", rebalance_after=went_stale, hold_s=60) == set()  # left out of this one
    assert silent(WALL, found, b"me", rebalance_after=went_stale - 1, hold_s=8) == set()  # held long enough


def test_a_rebalance_began_after_the_last_tick_before_it() -> None:
    start = RebalanceStart(generation=0, after=100.0, last_tick=100.0)
    assert start.tick(0, 101.0) == 100.0  # the worker started at 100: its first rebalance began later
    assert start.tick(0, 102.0) == 100.0
    assert start.tick(2, 103.0) == 102.0  # seen at 103 (paused or not): it began after the tick at 102
    assert start.tick(2, 104.0) == 102.0
