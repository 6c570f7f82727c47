"""A held commit (Redis has not taken the writes) leaves Faust's acked offsets as they were.

Faust picks the offsets to commit destructively; these tests run its own picking code on the
few attributes it reads, so they check the put-back against the real thing."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from agents.commit_hold import HELD, REPEAT_S, _acked, _put_back, in_redis
from orchestrator.batching import Flushes
from orchestrator.outage import Outage

PARTITION = TP("orchestrator.customer-events", 0)


class Acks:
    """The part of Faust's consumer that picking offsets reads and changes."""

    _new_offset = Consumer._new_offset
    _should_commit = Consumer._should_commit
    _filter_committable_offsets = Consumer._filter_committable_offsets

    def __init__(self, committed: int | None) -> None:
        self._gap: defaultdict[TP, IntervalTree] = defaultdict(IntervalTree)
        self._acked: defaultdict[TP, list[int]] = defaultdict(list)
        self._acked_index: defaultdict[TP, set[int]] = defaultdict(set)
        self._committed_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self._committed_offset[PARTITION] = committed

    def ack(self, *offsets: int) -> None:
        for offset in offsets:
            self._acked_index[PARTITION].add(offset)
            self._acked[PARTITION].append(offset)

    def pick(self) -> dict[Any, int]:
        return self._filter_committable_offsets([PARTITION])


def test_picking_takes_the_offsets_away_so_a_skipped_commit_would_stop_later_ones() -> None:
    acks = Acks(committed=10)
    acks.ack(10, 11, 12)
    assert acks.pick() == {PARTITION: 13}  # not committed
    acks.ack(13)
    assert acks.pick() == {}  # Faust sees a gap at the head (10-12) and commits nothing, ever


def test_a_held_commit_puts_back_what_it_picked_and_the_next_commit_covers_it_and_what_came_since() -> None:
    acks = Acks(committed=10)
    acks.ack(10, 11, 12)
    before = _acked(acks, [PARTITION])
    offsets = acks.pick()
    acks.ack(13, 14)  # acked while the commit waited for Redis
    _put_back(acks, before, offsets)
    assert acks.pick() == {PARTITION: 15}


def test_gaps_are_put_back_too() -> None:
    acks = Acks(committed=10)
    acks.ack(10, 13)
    acks._gap[PARTITION].addi(11, 13)  # offsets the broker never delivers (compaction, markers)
    before = _acked(acks, [PARTITION])
    offsets = acks.pick()
    assert offsets == {PARTITION: 14}
    _put_back(acks, before, offsets)
    assert acks.pick() == {PARTITION: 14}


def test_a_commit_waits_for_redis_only_so_long_and_the_flush_goes_on() -> None:
    done: list[bool] = []

    async def slow() -> None:
        await asyncio.sleep(0.2)
        done.append(True)

    async def scenario() -> bool:
        answer = await in_redis(Flushes(slow).written, wait_s=0.01)
        await asyncio.sleep(0.3)
        return answer

    assert asyncio.run(scenario()) is False
    assert done == [True]


def held() -> Outage:
    return Outage(HELD.what, HELD.log, HELD.repeat_s)


def test_held_commits_are_told_once_when_they_begin_and_once_when_they_end(caplog: pytest.LogCaptureFixture) -> None:
    commits = held()
    with caplog.at_level(logging.INFO, logger="agents.commit_hold"):
        for _ in range(5):
            commits.failed("Redis has not taken the writes")
        commits.succeeded()
        commits.succeeded()
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "committing offsets fails: Redis has not taken the writes" in caplog.records[0].getMessage()
    assert "committing offsets works again after" in caplog.records[1].getMessage()


def test_held_commits_are_told_again_once_a_minute_while_they_last(caplog: pytest.LogCaptureFixture) -> None:
    commits = held()
    with caplog.at_level(logging.WARNING, logger="agents.commit_hold"):
        commits.failed("Redis has not taken the writes")
        commits.said_at -= REPEAT_S  # a minute on
        commits.failed("Redis has not taken the writes")
        commits.failed("Redis has not taken the writes")
    assert len(caplog.records) == 2
