"""Which offsets a commit may cover, and when a partition's head was dropped (the broker test
is test_rebalance_stream.py)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from intervaltree import IntervalTree

from agents.commit_head import GRACE_S, _new_offset, committable, delivered, overtaken, sought


@dataclass(frozen=True, order=True)
class TP:
    topic: str
    partition: int


CE = TP("orchestrator.customer-events", 1)


class Consumer:
    """What the commit pick reads of Faust's consumer: acknowledged offsets, gaps, commits."""

    def __init__(self, committed: int | None) -> None:
        self._acked: defaultdict[TP, list[int]] = defaultdict(list)
        self._acked_index: defaultdict[TP, set[int]] = defaultdict(set)
        self._gap: defaultdict[TP, IntervalTree] = defaultdict(IntervalTree)
        self._committed_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self._committed_offset[CE] = committed

    def ack(self, *offsets: int) -> None:
        self._acked[CE].extend(offsets)
        self._acked_index[CE].update(offsets)


def test_a_commit_covers_the_run_of_acknowledged_offsets_from_the_committed_one() -> None:
    assert committable([513, 514, 515, 517], [], head=513) == 516
    assert committable([515, 514, 513], [], head=513) == 516


def test_nothing_is_committed_while_the_record_at_the_head_is_not_done() -> None:
    """Faust's own pick committed 516 here: its check let one missing record through."""
    assert committable([514, 515], [], head=513) is None
    assert committable([514, 515], [], head=None) is None


def test_gaps_count_as_done_also_one_that_begins_at_the_head() -> None:
    assert committable([516, 517], [(513, 516)], head=513) == 518
    assert committable([513, 517, 521], [(514, 517), (518, 520)], head=513) == 520


def test_the_pick_takes_what_it_covers_off_the_acknowledged_list_and_the_gaps() -> None:
    consumer = Consumer(committed=513)
    consumer.ack(513, 514, 516)
    consumer._gap[CE].addi(517, 519)

    assert _new_offset(consumer, CE) == 515
    assert consumer._acked[CE] == [516] and consumer._acked_index[CE] == {516}
    assert sorted((gap.begin, gap.end) for gap in consumer._gap[CE]) == [(517, 519)]


def test_with_nothing_committed_the_head_is_the_first_record_delivered_since_the_seek() -> None:
    consumer = Consumer(committed=None)
    sought(consumer, [CE])
    delivered(consumer, CE, 40)
    delivered(consumer, CE, 41)
    consumer.ack(41)

    assert _new_offset(consumer, CE) is None
    consumer.ack(40)
    assert _new_offset(consumer, CE) == 42


def test_a_head_overtaken_for_the_grace_period_is_named_once() -> None:
    consumer = Consumer(committed=513)
    consumer.ack(514, 515)

    assert overtaken(consumer, now=100.0) == []
    assert overtaken(consumer, now=100.0 + GRACE_S / 2) == []
    assert overtaken(consumer, now=100.0 + GRACE_S) == [(CE, 513)]
    assert overtaken(consumer, now=100.0 + GRACE_S + 1) == []


def test_a_head_that_is_only_late_is_not_named() -> None:
    consumer = Consumer(committed=513)
    assert overtaken(consumer, now=100.0) == []
    consumer.ack(513, 514)
    assert overtaken(consumer, now=100.0 + 2 * GRACE_S) == []
