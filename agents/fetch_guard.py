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
else could skip records that were delivered but not processed. Records Faust drops
when a rebalance stops the flow of a partition that has no committed offset yet are
not covered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)
_BATCH = "_orchestrator_fetched"  # the batch the consumer is delivering, kept on the consumer


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
