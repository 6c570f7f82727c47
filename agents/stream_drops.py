"""Workaround: a stream drops a record in a rebalance and goes on with the records after it.

Faust's stream throws away, unacknowledged, a message that reaches it while flow control is
suspended or from an older consumer generation (the Cython ``StreamIterator._prepare_event``,
and ``Stream._py_aiter``). When the rebalance ends with a seek to the committed offsets, the
record comes again. When it does not (seen in a broker test of a changing group), the agent
went on with the records after it, and :mod:`agents.commit_head` read the dropped one again
only 2-3 s later: a view read after the purchase it preceded, or worse, a wake read before a
dropped purchase, which fired the wait and nudged a buyer.

So each agent asks :func:`skip` of every record before it does anything with it. The fetch
guard notes the order it delivers each partition's records in (:meth:`DeliveryOrder.delivered`;
a seek back starts the order again). A record whose predecessor in that order never reached the
agent comes after a dropped one: it is skipped, and so is every later record of the partition,
until the dropped one comes again. The fetch guard seeks the partition back to it after the
batch in hand (:meth:`DeliveryOrder.rewinds`), and the skipped records come again after it, in
order. Neither the dropped record nor the skipped ones are acknowledged, so no commit passes them
(see :mod:`agents.commit_head`), even when the partition is taken away before the seek back: its
next owner reads them from the committed offset.

One agent takes each topic (``decide`` the customer events, ``ingest`` the inbound ones), so
one order per partition is enough. Every agent of the worker's consumer must ask :func:`skip`:
the order keeps each delivered record until its agent takes it, so a topic whose agent never
asks would keep all of its records (a few dozen bytes each, never freed before a rebalance).

A dropped record that no later record of its partition follows is found by the fetch guard
instead, after a batch (:func:`tail_drops`): records of a partition it delivered that the agent
has not taken (of a topic whose agent asks :func:`skip`), while no record of that topic waits
in a stream's queue, were dropped. Faust's conductor puts each record in the queues before
the fetch guard's next step, and the stream hands what it takes from a queue to the agent
without pausing, so nothing else holds a record in between. The guard still asks that the
partition stay so for a second (:data:`STALL_SECONDS`) before it seeks back, in case a path
of Faust's breaks that rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

from agents import commit_head
from orchestrator import metrics

log = logging.getLogger(__name__)
UNKNOWN = -1  # a record not delivered since the order was last forgotten (offsets are >= 0)
_KEPT = "_orchestrator_delivery_order"
STALL_SECONDS = 1.0  # how long records delivered and not taken, none queued, must stay so


@dataclass
class DeliveryOrder:
    """Per stream partition: the order records went to the agents, and what the agent took."""

    before: dict[Any, dict[int, int | None]] = field(default_factory=dict)  # record -> the one delivered before it
    last_delivered: dict[Any, int] = field(default_factory=dict)
    last_taken: dict[Any, int] = field(default_factory=dict)
    missing: dict[Any, int] = field(default_factory=dict)  # the dropped record the agent waits for
    due: dict[Any, int] = field(default_factory=dict)  # seeks back to it, not done yet
    stalled: dict[Any, tuple[int, int | None, float]] = field(default_factory=dict)  # first untaken, last taken, since
    checked: set[str] = field(default_factory=set)  # the topics whose agent asks about each record

    def delivered(self, tp: Any, offset: int) -> None:
        """The fetch guard delivers the record at ``offset`` (None before it: the first since a seek back)."""
        self.before.setdefault(tp, {})[offset] = self.last_delivered.get(tp)
        self.last_delivered[tp] = offset

    def sought(self, tp: Any, offset: int) -> None:
        """A seek: back (a re-read) starts the order again; forward, past what was delivered, goes on with it."""
        last = self.last_delivered.get(tp)
        if last is not None and offset <= last:
            del self.last_delivered[tp]

    def sought_to_committed(self, tp: Any, committed: int | None) -> None:
        """A rebalance: the stream drops what was delivered before it (an older generation), and
        reads from the committed offset; a missing record the group committed was processed."""
        self.last_delivered.pop(tp, None)
        self.before.pop(tp, None)
        self.due.pop(tp, None)
        missing = self.missing.get(tp)
        if missing is not None and committed is not None and committed > missing:
            del self.missing[tp]

    def skip(self, tp: Any, offset: int) -> bool:
        """Whether the agent must pass over the record at ``offset``: it comes after a dropped one."""
        self.checked.add(tp.topic)
        before = self.before.get(tp, {}).pop(offset, UNKNOWN)
        missing = self.missing.get(tp)
        if missing is not None:
            if before is not None or offset > missing:
                if before is None:  # a seek went past the dropped record: back to it again
                    self.due[tp] = missing
                return True
            del self.missing[tp]  # read again from the dropped record (or before it)
        elif before is not None and before != UNKNOWN and before != self.last_taken.get(tp):
            self.missing[tp] = self.due[tp] = self._first_dropped(tp, before)
            return True
        self.last_taken[tp] = offset
        return False

    def untaken(self, watched: Container[Any], queued: Callable[[Any], bool], now: float) -> list[tuple[Any, int]]:
        """The partitions in ``watched`` whose records went to the agent's stream, which has none
        in ``queued(tp)`` and took none of them for :data:`STALL_SECONDS`: each with its first
        such record, dropped with all after it. Each becomes a missing record to seek back to.
        Only topics whose agent asks :meth:`skip` are watched: no other takes their records."""
        stalled, self.stalled = self.stalled, {}
        found = []
        for tp, records in self.before.items():
            if not records or tp.topic not in self.checked or tp in self.missing or tp not in watched or queued(tp):
                continue
            state = (min(records), self.last_taken.get(tp))
            first, taken, since = stalled.get(tp, (*state, now))
            if (first, taken) != state:
                since = now
            if now - since < STALL_SECONDS:
                self.stalled[tp] = (*state, since)
                continue
            records.clear()  # all of them come again after the seek back
            self.missing[tp] = self.due[tp] = first
            found.append((tp, first))
        return found

    def rewinds(self) -> list[tuple[Any, int]]:
        """The partitions to seek back to a dropped record, taken off the list."""
        due = list(self.due.items())
        self.due.clear()
        return due

    def _first_dropped(self, tp: Any, dropped: int) -> int:
        """The first record after the last the agent took: back along the order from ``dropped``."""
        chain, taken = self.before.get(tp, {}), self.last_taken.get(tp)
        while True:
            earlier = chain.pop(dropped, UNKNOWN)
            if earlier is None or earlier in (UNKNOWN, taken):
                return dropped
            dropped = earlier


def order(consumer: Any) -> DeliveryOrder:
    """The consumer's delivery order, made on first use."""
    return commit_head.made_on(consumer, _KEPT, DeliveryOrder)


def tail_drops(consumer: Any) -> None:
    """After a batch: find records the stream dropped that no later record of their partition
    followed (:meth:`DeliveryOrder.untaken`); the fetch guard's next :meth:`DeliveryOrder.rewinds`
    seeks back to them. Partitions no channel subscribes to are left alone (nothing to ask)."""
    channels = consumer.app.topics._tp_index  # the conductor's channels per partition

    def queued(tp: Any) -> bool:
        subscribed = channels.get(tp)
        return not subscribed or any(not channel.queue.empty() for channel in subscribed)

    for tp, offset in order(consumer).untaken(consumer.assignment(), queued, time.monotonic()):
        metrics.STREAM_DROPS.labels(tp.topic).inc()
        log.warning("%s: the stream dropped offset %d and nothing after it came; reading again from there", tp, offset)


def skip(consumer: Any, message: Any) -> bool:
    """:meth:`DeliveryOrder.skip` for the agent's record, logging and counting each dropped record
    found. A skipped record is marked acknowledged before the stream would acknowledge it, which
    keeps its offset out of those a commit may cover; and it is no longer one Faust waits for."""
    delivery, tp, offset = order(consumer), message.tp, message.offset
    was_missing = delivery.missing.get(tp)
    if not delivery.skip(tp, offset):
        return False
    message.acked = True
    consumer._unacked_messages.discard(message)
    missing = delivery.missing.get(tp)
    if missing is not None and missing != was_missing:
        metrics.STREAM_DROPS.labels(tp.topic).inc()
        log.warning("%s: the stream dropped offset %d and went on to %d; reading again from there", tp, missing, offset)
    return True
