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
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Set
from typing import Any

from faust.transport.consumer import Consumer, ThreadDelegateConsumer

log = logging.getLogger(__name__)
_BATCH = "_orchestrator_fetched"  # the batch the consumer is delivering, kept on the consumer
_seek_to_committed_as_shipped = ThreadDelegateConsumer.seek_to_committed


def install() -> None:
    """Patch Faust's consumer once per process."""
    if getattr(Consumer, "_orchestrator_guarded", False):
        return
    fetch, deliver = Consumer._wait_next_records, Consumer.getmany

    async def _wait_next_records(self: Any, timeout: float) -> Any:
        records, active = await fetch(self, timeout)
        setattr(self, _BATCH, records or {})
        return records, active

    async def getmany(self: Any, timeout: float) -> AsyncIterator[Any]:
        generation = self.app.consumer_generation_id
        delivered: dict[Any, int] = {}
        async for tp, message in deliver(self, timeout):
            delivered[tp] = message.offset
            yield tp, message
        batch = getattr(self, _BATCH, None) or {}
        setattr(self, _BATCH, {})
        if not self.flow_active or self.app.consumer_generation_id != generation:
            return  # a rebalance: the partitions are sought to their committed offsets, leave them there
        for tp, records in batch.items():
            first = first_undelivered(records, delivered.get(tp))
            if first is not None:
                await rewind(self, tp, first)

    Consumer._wait_next_records = _wait_next_records  # type: ignore[method-assign]
    Consumer.getmany = getmany  # type: ignore[method-assign]
    ThreadDelegateConsumer.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
    Consumer._orchestrator_guarded = True  # type: ignore[attr-defined]


def first_undelivered(records: list[Any], last_delivered: int | None) -> int | None:
    """The offset of the first record after ``last_delivered``; None if all went out."""
    for record in records:
        if last_delivered is None or record.offset > last_delivered:
            return int(record.offset)
    return None


async def rewind(consumer: Any, tp: Any, offset: int) -> None:
    if tp not in consumer.assignment():
        return  # whoever owns it now starts from the committed offset (or the earliest)
    log.info("re-reading %s from offset %d: Faust dropped records it had fetched", tp, offset)
    try:
        await consumer.seek(tp, offset)
    except Exception:  # a partition revoked in between: its new owner reads it
        log.warning("could not seek %s back to %d", tp, offset, exc_info=True)


async def _seek_to_committed(self: Any) -> Any:
    """Faust's seek to committed offsets, then uncommitted stream partitions to their beginning."""
    committed = await _seek_to_committed_as_shipped(self)
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
