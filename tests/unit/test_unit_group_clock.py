"""The group's inbound clock as a pure function: which workers' entries hold the timer back."""

from __future__ import annotations

import math

from agents.group_clock import FORGET_S, STALE_S, entry, lowest

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
