"""Workaround: faust-streaming throws away records it has fetched but will not deliver.

Faust's ``Consumer.getmany`` drops a fetched batch's records for partitions that
are not active (paused while a rebalance recovers tables, or for back-pressure),
and aiokafka's position has already moved past them, so they are never read again: a new
``events.<channel>`` topic that receives traffic before the workers subscribe to it
loses its first records in the rebalance that subscribes them (the same family as
faust-streaming issues #216 and #221; the integration test for new channel topics
caught it). This module seeks each such partition back to the first record that
was not delivered. It does so only when the batch ended without a rebalance: after
one, Faust seeks partitions to their committed offsets, and seeking them anywhere
else could skip records that were delivered but not processed.

That seek has a hole of its own, closed here too: aiokafka's ``seek_to_committed``
leaves a partition with no committed offset (or offset 0) where its fetch position
happens to be, so records of a brand-new topic fetched and dropped while the
rebalance recovered were skipped for good (one in eight runs of the integration
test lost the first record of a partition). Such a partition is sought to its
beginning, where ``auto_offset_reset=earliest`` would have started a new owner.

And a rebalance while records flow skipped some for good: Faust's seek to the committed
offsets raced the batch being delivered, a partition went on a few records past its committed
offset, and Faust's drain loop took the missing offsets for a gap (as for transaction markers)
and committed past them. So each stream partition's next offset is tracked here (every seek
sets it), a record after a hole is held back and the hole read again once, and Faust's read
offset is set here so that it never marks a gap itself (:func:`admit`).

And no record is delivered while Faust seeks the partitions to their committed offsets
(:class:`Seeks`). That seek is no single step: aiokafka asks the broker for each partition's
committed offset in turn and seeks each as its answer comes (``seek_to_committed``), and only
then are this module's expected offsets (:func:`expect`), the delivery order of
:mod:`agents.stream_drops`, Faust's read and committed offsets set for all of them. After a
rebalance it runs while records flow: the recovery resumes the stream partitions before it
seeks them, and the fetch of a batch waiting in aiokafka when it began goes on. A batch fetched
in that window moved a partition's position past records, and then :func:`expect` set its
expected offset back to the committed one and forgot the records delivered from it: when the
stream dropped them and no later record came to show the hole, nothing read them again (the
broker test of a worker joining mid-traffic lost a partition's 262 last records that way); and
each such seek reset the guard's bookkeeping beneath records delivered under the one before
(Faust seeks twice after a rebalance: the recovery does, and the fetch loop does when a batch
arrives while flow is stopped). So a fetch waits until no such seek is running; a batch whose
fetch overlapped one is not delivered, and the partitions are sought to their committed offsets
again once nothing is in flight; a batch during whose delivery one begins delivers nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from faust.transport.consumer import Consumer, ThreadDelegateConsumer

from agents import commit_head, stream_drops

log = logging.getLogger(__name__)
_BATCH = "_orchestrator_fetched"  # the batch the consumer is delivering, kept on the consumer
_NEXT = "_orchestrator_next"  # per stream partition: the offset it must deliver next
_CONFIRMED = "_orchestrator_confirmed"  # per stream partition: a hole read again from where it began
_SEEKS = "_orchestrator_seeks"  # the consumer's Seeks
_FETCHED = "_orchestrator_fetched_in"  # the Seeks.epoch a batch's fetch began in, and whether it overlapped a seek
_seek_to_committed_as_shipped = ThreadDelegateConsumer.seek_to_committed
_seek_as_shipped = Consumer.seek
_perform_seek_as_shipped = Consumer.perform_seek
DELIVER, SKIP, HOLE = "deliver", "skip", "hole"


def install() -> None:
    """Patch Faust's consumer once per process."""
    if getattr(Consumer, "_orchestrator_guarded", False):
        return
    fetch, deliver = Consumer._wait_next_records, Consumer.getmany

    async def _wait_next_records(self: Any, timeout: float) -> Any:
        seeks = seeks_of(self)
        await seeks.settled.wait()  # no fetch while the partitions are sought to their committed offsets
        began = seeks.epoch
        records, active = await fetch(self, timeout)
        setattr(self, _BATCH, records or {})
        setattr(self, _FETCHED, (began, seeks.straddles(began)))
        return records, active

    async def getmany(self: Any, timeout: float) -> AsyncIterator[Any]:
        generation = self.app.consumer_generation_id
        seeks = seeks_of(self)
        delivered: dict[Any, int] = {}
        holes: dict[Any, int] = {}
        stale = False
        changelogs = self.app.tables.changelog_topics  # the recovery positions these itself
        async for tp, message in deliver(self, timeout):
            began, _ = getattr(self, _FETCHED, (seeks.epoch, False))
            if tp.topic not in changelogs and (stale or seeks.straddles(began)):
                stale = True  # a seek to the committed offsets began: it decides where each partition resumes
                continue
            if tp in holes:
                continue
            verdict = await admit(self, tp, message.offset)
            if verdict is HOLE:
                holes[tp] = expected_offset(self, tp)
            if verdict is not DELIVER:
                continue
            delivered[tp] = message.offset
            yield tp, message
        batch = getattr(self, _BATCH, None) or {}
        setattr(self, _BATCH, {})
        began, overlapped = getattr(self, _FETCHED, (seeks.epoch, False))
        if overlapped and batch:
            await seek_again(self, batch)
            return
        if stale or seeks.straddles(began):
            return  # sought to the committed offsets meanwhile: nothing to read again from this batch
        if not self.flow_active or self.app.consumer_generation_id != generation:
            return  # a rebalance: the partitions are sought to their committed offsets, leave them there
        for tp, offset in holes.items():
            await rewind(self, tp, offset, "it skipped records")
        for tp, offset in commit_head.overtaken(self):
            await rewind(self, tp, offset, "records after it were done 2 s ago and it was not")
        for tp, records in batch.items():
            first = first_undelivered(records, delivered.get(tp))
            if first is not None and tp not in holes:
                await rewind(self, tp, first, "Faust dropped records it had fetched")
        stream_drops.tail_drops(self)
        for tp, offset in stream_drops.order(self).rewinds():  # last: back past any seek above
            await rewind(self, tp, offset, "a record after it reached the agent first")

    Consumer._wait_next_records = _wait_next_records  # type: ignore[method-assign]
    Consumer.getmany = getmany  # type: ignore[method-assign]
    Consumer.seek = _seek  # type: ignore[method-assign]
    Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    ThreadDelegateConsumer.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
    Consumer._orchestrator_guarded = True  # type: ignore[attr-defined]


@dataclass
class Seeks:
    """Faust's seeks to the committed offsets (``Consumer.perform_seek``), as the fetch loop sees
    them: how many are running, and an epoch that each one's beginning and end moves on."""

    running: int = 0
    epoch: int = 0
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # set while none runs

    def __post_init__(self) -> None:
        if not self.running:
            self.settled.set()

    def began(self) -> None:
        self.running += 1
        self.epoch += 1
        self.settled.clear()

    def ended(self) -> None:
        self.running -= 1
        self.epoch += 1
        if not self.running:
            self.settled.set()

    def straddles(self, epoch: int) -> bool:
        """Whether a seek is running, or has run, since ``epoch``."""
        return self.running > 0 or self.epoch != epoch


def seeks_of(consumer: Any) -> Seeks:
    """The consumer's :class:`Seeks`, made on first use."""
    return commit_head.made_on(consumer, _SEEKS, Seeks)


async def _perform_seek(self: Any) -> None:
    """Faust's seek of every partition to its committed offset, counted in :class:`Seeks`."""
    seeks = seeks_of(self)
    seeks.began()
    try:
        await _perform_seek_as_shipped(self)
    finally:
        seeks.ended()


async def seek_again(consumer: Any, batch: Mapping[Any, Any]) -> None:
    """A batch fetched while the partitions were sought to their committed offsets moved their
    positions past records it does not deliver: once no seek runs, seek them all to the committed
    offsets again, with nothing in flight. While flow is stopped (a rebalance) the recovery does."""
    await seeks_of(consumer).settled.wait()
    if not consumer.flow_active or not consumer.assignment():
        return
    log.info("a batch was fetched while the partitions were sought to their committed offsets: seeking again")
    try:
        await consumer.perform_seek()
    except Exception:  # revoked in between: the rebalance seeks them again
        log.warning("could not seek %d partition(s) to their committed offsets again", len(batch), exc_info=True)


def first_undelivered(records: list[Any], last_delivered: int | None) -> int | None:
    """The offset of the first record after ``last_delivered``; None if all went out."""
    for record in records:
        if last_delivered is None or record.offset > last_delivered:
            return int(record.offset)
    return None


async def rewind(consumer: Any, tp: Any, offset: int, why: str) -> None:
    if tp not in consumer.assignment():
        return  # whoever owns it now starts from the committed offset (or the earliest)
    log.info("re-reading %s from offset %d: %s", tp, offset, why)
    try:
        await consumer.seek(tp, offset)
    except Exception:  # a partition revoked in between: its new owner reads it
        log.warning("could not seek %s back to %d", tp, offset, exc_info=True)


async def _seek_to_committed(self: Any) -> Any:
    """Faust's seek to committed offsets, then uncommitted stream partitions to their beginning."""
    committed = await _seek_to_committed_as_shipped(self)
    expect(self, committed)
    fresh = uncommitted(committed, self.assignment(), self.app.tables.changelog_topics)
    if fresh:
        log.debug("reading %d partition(s) with no committed offset from the beginning", len(fresh))
        try:
            await self._thread.seek_to_beginning(*fresh)
        except Exception:  # revoked in between: the new owner starts from the earliest
            log.warning("could not seek %s to the beginning", fresh, exc_info=True)
    return committed


def uncommitted(committed: Mapping[Any, int | None], assigned: Set[Any], changelogs: Set[str]) -> list[Any]:
    """Stream partitions still assigned whose group has committed nothing (None or 0).

    Table changelogs are left alone: the group never commits them, and Faust's recovery
    positions them itself."""
    return sorted(
        (tp for tp, offset in committed.items() if not offset and tp in assigned and tp.topic not in changelogs),
        key=lambda tp: (tp.topic, tp.partition),
    )


async def _seek(self: Any, partition: Any, offset: int) -> None:
    """Faust's seek; the partition then delivers from ``offset`` on."""
    await _seek_as_shipped(self, partition, offset)
    _next_offsets(self)[partition] = offset
    stream_drops.order(self).sought(partition, offset)


def expect(consumer: Any, committed: Mapping[Any, int | None]) -> None:
    """After a seek to the committed offsets, each partition delivers from its own; one with
    none (sought to its beginning) from wherever its first record is."""
    nexts, delivery = _next_offsets(consumer), stream_drops.order(consumer)
    for tp, offset in committed.items():
        delivery.sought_to_committed(tp, offset)
        if offset:
            nexts[tp] = offset
        else:
            nexts.pop(tp, None)
        commit_head.kept_on(consumer, _CONFIRMED).pop(tp, None)
    commit_head.sought(consumer, committed)


async def admit(consumer: Any, tp: Any, offset: int) -> str:
    """Whether the record at ``offset`` of ``tp`` goes to the agents: DELIVER it, SKIP it (it
    went out since the last seek), or it comes after a HOLE (records not delivered before it).

    A hole is read again once from where it begins (:func:`rewind`); found again there, the
    offsets are not records (transaction markers, compaction), and Faust is told they need no
    processing (a gap) as it would have been. Faust's own read offset is set to the
    record, so its check of the same (which takes a hole for missing offsets, and lets the
    commit pass over records never processed) never sees one."""
    if tp.topic in consumer.app.tables.changelog_topics:
        return DELIVER  # recovery positions the changelogs itself
    nexts, confirmed = _next_offsets(consumer), commit_head.kept_on(consumer, _CONFIRMED)
    expected = nexts.get(tp)
    if expected is not None and offset < expected:
        return SKIP
    if expected is not None and offset > expected:
        if confirmed.get(tp) != expected:
            confirmed[tp] = expected
            log.warning("%s delivered offset %d, but %d is next: reading again from %d", tp, offset, expected, expected)
            return HOLE
        add_gap(consumer, tp, expected, offset)
    confirmed.pop(tp, None)
    commit_head.delivered(consumer, tp, offset)
    stream_drops.order(consumer).delivered(tp, offset)
    nexts[tp] = offset + 1
    consumer._read_offset[tp] = offset
    return DELIVER


def add_gap(consumer: Any, tp: Any, begin: int, end: int) -> None:
    """Offsets ``[begin, end)`` hold no records. Not Faust's ``_add_gap``: it leaves out the
    committed offset itself (it takes it for the last record processed, not the next one)."""
    gaps = consumer._gap[tp]
    gaps.addi(begin, end)
    gaps.merge_overlaps()


def expected_offset(consumer: Any, tp: Any) -> int:
    return int(_next_offsets(consumer)[tp])


def _next_offsets(consumer: Any) -> dict[Any, int]:
    return commit_head.kept_on(consumer, _NEXT)
