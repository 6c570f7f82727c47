"""Who is inside each journey version, across workers: what a worker writes, how ``list`` adds it up."""

from __future__ import annotations

import json

from test_unit_timers import FakeDB

from agents.web import KeyCounts
from orchestrator.cli.inside import coverage, steps_line
from orchestrator.journeys.inside import STALE_S, entry, read

NOW = 1_790_000_000.0


def tally(value: bytes) -> dict[tuple[str, str, str], int]:
    """A stand-in for records.journey_places: the value names the step."""
    return {("cart", "2", value.decode()): 1}


def test_only_partitions_counted_to_the_end_are_exact_and_written() -> None:
    small, large = FakeDB(), FakeDB()
    for i in range(3):
        small.put(f"a{i}".encode(), b"wait_1h")
    for i in range(50):
        large.put(f"b{i:02d}".encode(), b"wait_24h")
    counts = KeyCounts(app=None, tally=tally)

    assert counts.advance([(0, small), (1, large)], chunk=10) is None
    assert counts.exact() == {0: {("cart", "2", "wait_1h"): 3}}  # partition 1 is still being counted

    while counts.advance([(0, small), (1, large)], chunk=10) is None:
        pass
    assert counts.exact() == {0: {("cart", "2", "wait_1h"): 3}, 1: {("cart", "2", "wait_24h"): 50}}
    counts.advance([(1, large)])  # partition 0 went to another worker
    assert list(counts.exact()) == [1]


def test_the_partitions_of_several_workers_add_up_by_version_and_step() -> None:
    fields = {
        b"0": entry({("cart", "2", "wait_1h"): 3, ("cart", "1", "wait_24h"): 1}, NOW - 2, "host-a:6066", 4),
        b"1": entry({("cart", "2", "wait_1h"): 4, ("cart", "2", "wait_24h"): 2}, NOW - 1, "host-b:6067", 4),
        b"3": entry({}, NOW - 1, "host-b:6067", 4),  # counted: nobody inside there
    }
    inside = read(fields)

    assert inside.customers("cart", 2) == 9 and inside.customers("cart", 1) == 1
    assert inside.steps[("cart", 2)] == {"wait_1h": 7, "wait_24h": 2}
    assert inside.customers("welcome", 1) == 0
    assert inside.missing() == [2] and inside.partitions == 4
    assert inside.oldest() == NOW - 2 and inside.stale(NOW) == []


def test_figures_nobody_renewed_are_called_stale_and_unreadable_ones_are_left_out() -> None:
    good = json.loads(entry({("cart", "2", "wait_1h"): 5}, NOW - STALE_S - 1, "host-a:6066", 2))
    good["places"].append(["cart", "v-two", "wait_1h", 9])  # a row this release cannot read
    fields = {"0": json.dumps(good), "1": "{not json", "x": entry({}, NOW, "h:1", 2), "2": json.dumps({"at": NOW})}

    inside = read(fields)

    assert inside.customers("cart", 2) == 5 and list(inside.steps) == [("cart", 2)]
    assert inside.counted == {0: NOW - STALE_S - 1}
    assert inside.stale(NOW) == [0] and inside.missing() == [1]


def test_list_says_where_customers_are_and_what_the_figures_leave_out() -> None:
    fields = {
        "0": entry({("cart", "2", "wait_1h"): 1200, ("cart", "2", "wait_24h"): 34}, NOW - 3, "a:1", 3),
        "2": entry({("cart", "1", "wait_24h"): 1}, NOW - STALE_S - 60, "b:1", 3),
    }
    inside = read(fields)

    assert steps_line(inside, "cart", 2) == "1,234 customers inside now: wait_1h 1,200, wait_24h 34"
    assert steps_line(inside, "cart", 1) == "1 customer inside now: wait_24h 1"
    assert steps_line(inside, "welcome", 1) is None
    assert coverage(inside, NOW) == (
        "customers inside: as the workers counted them, up to 2 min ago, on 2 of 3 partition(s); "
        "partition(s) 1 not counted yet, so their customers are left out; the figures of partition(s) 2 "
        "are older than 60 s (a worker stopped, or the one that took over is still counting)"
    )
