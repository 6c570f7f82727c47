"""Commands decided again by a worker that took customers over from one that died.

A worker that takes a partition over rebuilds its customers from the table's changelog
and reads the partition from its last committed offset. The worker that held it before
may have decided some of those records, sent their commands, and died before the
changelog records of the same decisions left its producer: they travel in batches of
their own, so either can arrive without the other. The new worker then finds the records
new, decides them again, and would send the same commands (same action ids) a second
time. The outbox (:mod:`agents.outbox`) cannot help: it is kept in the very changelog
record that was lost.

So a record that was already in the log when its partition changed hands is *in doubt*:
the commands decided for it are first looked up on their action topics
(:meth:`agents.outbox.Delivered.not_on_topics`, one read per channel and hand-over) and
those there already are not sent again. A record appended after the hand-over cannot have
been decided by anyone else. A worker's first assignment counts as a hand-over too: it may
follow its own crash, and the read is one per channel, only when a record in doubt decides
a command.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

Partition = tuple[str, int]  # (topic, partition): what Faust's TP is, without importing it
# How long before a hand-over the worker before may have sent what it did not commit: it
# commits every few seconds and is taken for dead after its session timeout (under a minute).
# Records appended earlier (a backlog) are looked up from then, not from their own time: the
# read-back stays one of minutes, however far behind the partition was.
LOOKBACK_S = 600.0


class Doubt(NamedTuple):
    """When the worker before may have sent a record's commands: between the record's own
    time (or :data:`LOOKBACK_S` before the hand-over) and the hand-over."""

    since: float
    until: float


@dataclass
class Handover:
    """Which of the topic's partitions this worker took over, and when: records appended
    before then are in doubt until the first record appended after it."""

    topic: str
    held: frozenset[Partition] = frozenset()
    taken_at: dict[Partition, float] = field(default_factory=dict)

    def assigned(self, assignment: Iterable[Partition], now: float) -> None:
        """A rebalance gave this worker ``assignment``: the partitions it did not hold are
        taken over now (Faust hands every partition in, kept or new, after each rebalance)."""
        mine = frozenset((topic, partition) for topic, partition in assignment if topic == self.topic)
        for tp in mine - self.held:
            self.taken_at[tp] = now
        for tp in self.held - mine:
            self.taken_at.pop(tp, None)
        self.held = mine

    def in_doubt(self, tp: Partition, appended_at: float) -> Doubt | None:
        """Whether the record at ``tp`` appended at ``appended_at`` may have been decided by the
        partition's previous holder, and when; None if it cannot have been (and, from the first
        such record on, for the partition)."""
        taken_at = self.taken_at.get(tp)
        if taken_at is None:
            return None
        if appended_at >= taken_at:  # offsets only grow: the records after it are new too
            del self.taken_at[tp]
            return None
        return Doubt(max(appended_at, taken_at - LOOKBACK_S), taken_at)
