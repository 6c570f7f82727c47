"""The Faust workaround's decisions, as plain functions (the broker tests are in test_worker_web.py
and test_rebalance_stream.py)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from intervaltree import IntervalTree

from agents.fetch_guard import DELIVER, HOLE, SKIP, Seeks, admit, expect, first_undelivered, uncommitted


@dataclass(frozen=True, order=True)
class TP:
    topic: str
    partition: int


@dataclass(frozen=True)
class Rec:
    offset: int


def test_a_partition_the_group_never_committed_is_read_from_the_beginning() -> None:
    committed = {TP("events.booth", 0): None, TP("events.booth", 1): 0, TP("events.web", 0): 17}

    assert uncommitted(committed, set(committed), changelogs=set()) == [TP("events.booth", 0), TP("events.booth", 1)]


def test_table_changelogs_and_partitions_no_longer_assigned_are_left_alone() -> None:
    committed = {TP("app-customers-changelog", 0): None, TP("events.booth", 0): None, TP("events.booth", 1): None}
    assigned = {TP("app-customers-changelog", 0), TP("events.booth", 1)}

    assert uncommitted(committed, assigned, changelogs={"app-customers-changelog"}) == [TP("events.booth", 1)]


def test_the_first_record_not_delivered_is_where_a_cut_short_batch_resumes() -> None:
    batch = [Rec(5), Rec(6), Rec(7)]

    assert first_undelivered(batch, last_delivered=None) == 5
    assert first_undelivered(batch, last_delivered=5) == 6
    assert first_undelivered(batch, last_delivered=7) is None


def test_a_fetch_with_no_seek_to_the_committed_offsets_during_it_delivers() -> None:
    seeks = Seeks()
    began = seeks.epoch

    assert seeks.settled.is_set()
    assert not seeks.straddles(began)


def test_a_seek_to_the_committed_offsets_running_or_run_since_a_fetch_began_straddles_it() -> None:
    seeks = Seeks()
    began = seeks.epoch

    seeks.began()
    assert seeks.straddles(began) and not seeks.settled.is_set()
    seeks.ended()
    assert seeks.straddles(began) and seeks.settled.is_set()  # over, but the batch came from before it
    assert not seeks.straddles(seeks.epoch)  # a fetch begun after it


def test_two_seeks_at_once_settle_when_the_last_one_ends() -> None:
    seeks = Seeks()  # the recovery's and the fetch loop's, as after a rebalance

    seeks.began()
    seeks.began()
    seeks.ended()
    assert seeks.running == 1 and not seeks.settled.is_set()
    seeks.ended()
    assert seeks.running == 0 and seeks.settled.is_set()


class Tables:
    changelog_topics = frozenset({"app-customers-changelog"})


class App:
    tables = Tables()


class Consumer:
    """What :func:`admit` reads and writes of Faust's consumer: its read offsets and gaps."""

    app = App()

    def __init__(self) -> None:
        self._read_offset: dict[TP, int] = {}
        self._gap: defaultdict[TP, IntervalTree] = defaultdict(IntervalTree)

    @property
    def gaps(self) -> list[tuple[TP, int, int]]:
        """Each gap as (partition, first offset, offset after it)."""
        return sorted((tp, gap.begin, gap.end) for tp, tree in self._gap.items() for gap in tree)


def admitted(consumer: Consumer, tp: TP, *offsets: int) -> list[str]:
    return [asyncio.run(admit(consumer, tp, offset)) for offset in offsets]


WEB = TP("events.web", 0)


def test_records_in_order_are_delivered_and_become_faust_s_read_offset() -> None:
    consumer = Consumer()
    expect(consumer, {WEB: 10})

    assert admitted(consumer, WEB, 10, 11, 12) == [DELIVER, DELIVER, DELIVER]
    assert consumer._read_offset[WEB] == 12 and consumer.gaps == []


def test_a_record_before_the_next_offset_went_out_already_and_is_skipped() -> None:
    consumer = Consumer()
    expect(consumer, {WEB: 10})

    assert admitted(consumer, WEB, 10, 11, 10, 11, 12) == [DELIVER, DELIVER, SKIP, SKIP, DELIVER]


def test_a_hole_is_read_again_once_and_only_then_passed_over_as_a_gap() -> None:
    """The lost-records race: the partition resumes past its committed offset. The first
    time the hole is a reason to read again; found again, its offsets hold no records."""
    consumer = Consumer()
    expect(consumer, {WEB: 10})

    assert admitted(consumer, WEB, 13) == [HOLE]
    assert consumer.gaps == [] and WEB not in consumer._read_offset
    assert admitted(consumer, WEB, 13, 14) == [DELIVER, DELIVER]
    assert consumer.gaps == [(WEB, 10, 13)]  # the committed offset 10 too: Faust's own gap left it out


def test_a_hole_filled_when_read_again_delivers_every_record() -> None:
    consumer = Consumer()
    expect(consumer, {WEB: 10})

    assert admitted(consumer, WEB, 12, 10, 11, 12) == [HOLE, DELIVER, DELIVER, DELIVER]
    assert consumer.gaps == []


def test_a_partition_with_no_committed_offset_delivers_from_its_first_record() -> None:
    consumer = Consumer()
    expect(consumer, {WEB: 10})
    expect(consumer, {WEB: None})

    assert admitted(consumer, WEB, 0, 1) == [DELIVER, DELIVER]


def test_table_changelogs_are_positioned_by_faust_s_recovery_and_always_delivered() -> None:
    consumer = Consumer()
    changelog = TP("app-customers-changelog", 0)
    expect(consumer, {changelog: 10})

    assert admitted(consumer, changelog, 3, 20) == [DELIVER, DELIVER]
