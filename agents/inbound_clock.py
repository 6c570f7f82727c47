"""How far this worker's ingest has read its inbound partitions: the wall clock waits by.

A wait that falls due while the events before its due time are still unread must not
fire first. A goal (a purchase) that reached Kafka before the wait was due would then
come too late to cancel it, and the customer would get the nudge for what they had
already bought. That happens whenever the ingest agent is behind its inbound
partitions:

* a worker that takes partitions over from one that died reads what arrived while they
  had no owner (Kafka's session timeout, 6-60 s);
* a worker restarted after a stop reads what arrived while it was down;
* a worker falls behind under load.

Wakes travel on the customer-events topic, where the ingest agent forwards events, in
the same partition as the customer's own events. So a wake sent after the events before
its due time have been forwarded is processed after them: the goal cancels the wait
first. The timer sends wakes only up to :meth:`InboundProgress.clock`. That clock is the
wall clock, held back to the time of the last record forwarded from an inbound partition
that is still being read with more behind it.

A partition has caught up when the last record forwarded from it, or the group's committed
offset (everything before it was forwarded, by this worker or the one before it), reaches
its end. One that has not is being read while a record came from it within
:data:`QUIET_S`. A partition new to this worker (since the last rebalance) with records
left holds every wait back until its first record comes, for at most
:data:`FIRST_RECORD_S`: taking a partition over, the first fetch can take seconds on a
loaded machine, and a shorter hold let a wait fire before the purchase behind it. A
partition whose end this worker does not reach, yet from which nothing comes (a
transaction marker at the end of the log, a partition Faust has paused, a fetch that
fails), stops holding waits back after that. They then fire as they did before this
clock, late by at most those bounds. A busy ingest agent keeps forwarding, so it keeps
holding them back.

Event-time mode needs none of this: waits there fire by the partition's own event-time
watermark.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

QUIET_S = 2.0  # a partition from which nothing came for this long is not being read
FIRST_RECORD_S = 30.0  # a partition new to the worker, with records left, holds waits this long for its first one
Partition = tuple[str, int]  # (topic, partition)


@dataclass
class Forwarded:
    offset: int
    ts: float  # the record's Kafka timestamp
    at: float  # monotonic time it was forwarded


@dataclass
class InboundProgress:
    """The last record the ingest agent forwarded from each inbound partition."""

    quiet_s: float = QUIET_S
    first_record_s: float = FIRST_RECORD_S
    forwarded: dict[Partition, Forwarded] = field(default_factory=dict)
    first_seen: dict[Partition, float] = field(default_factory=dict)  # monotonic, since the last rebalance
    generation: int = 0  # the rebalance all this was learnt in

    def record(self, partition: Partition, offset: int, ts: float, now: float) -> None:
        """The ingest agent is done with the record at ``offset`` (forwarded or dead-lettered)."""
        self.forwarded[partition] = Forwarded(offset, ts, now)

    def follow(self, generation: int) -> None:
        """Forget everything after a rebalance: a partition may come back with a backlog
        another worker left, and what was forwarded from it before says nothing of that."""
        if generation != self.generation:
            self.forwarded.clear()
            self.first_seen.clear()
            self.generation = generation

    def clock(
        self,
        wall: float,
        now: float,
        ends: Mapping[Partition, int | None],
        committed: Mapping[Partition, int | None] | None = None,
    ) -> float:
        """The time up to which waits may fire: ``wall``, or less while a partition of
        ``ends`` (this worker's inbound partitions and the offset after their last record,
        None if not known yet) is being read and has records left. ``committed``: the
        group's committed offset of each, where known."""
        limit = wall
        for partition, end in ends.items():
            last = self.forwarded.get(partition)
            if end is not None and _reached(last, (committed or {}).get(partition)) >= end:
                continue  # caught up
            if last is not None:
                if now - last.at <= self.quiet_s:  # else nothing comes from it: not a backlog being read
                    limit = min(limit, last.ts)
            elif now - self.first_seen.setdefault(partition, now) <= self.first_record_s:
                limit = float("-inf")  # its backlog is unread: nothing is known of it
        return limit


def _reached(last: Forwarded | None, committed: int | None) -> int:
    """The offset up to which a partition's records are known to have been forwarded."""
    return max(last.offset + 1 if last is not None else 0, committed or 0)
