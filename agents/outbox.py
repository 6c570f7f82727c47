"""The outbox: what a record's decisions sent, kept with the customer until the record
can no longer come back, and sent again if it does.

Faust writes a table change to the local RocksDB at once; the changelog record and the
commands leave with the producer's next batch. A worker killed in between restarts from
the last committed offset with a state that has already seen the record: the event is a
duplicate, the wake is stale, and the command would never be sent. So each profile keeps,
in the same write as its state, the commands and follow-up events of its last few
records, under the record's place in the log (partition and offset). A record read again
from the same place is a redelivery, and what it sent is sent again, with the same action
ids so that channels can drop the copy. A channel sending an event twice is not: the
repeat has a place of its own and stays a silent duplicate.

Commands are thus delivered at least once; a copy goes out only after a crash, for the
records the worker had decided but not yet committed (Faust flushes the producer before
each commit, so nothing older is owed).
"""

from __future__ import annotations

from dataclasses import replace

from orchestrator.identity.graph import Effects
from orchestrator.identity.records import Profile, Record, Sent

MOST = 4  # records remembered per customer: the few a customer has between two commits
KEEP_S = 3600.0  # an entry this old is dropped at the customer's next write: long committed
REDELIVERED = frozenset({"duplicate", "stale_wake"})  # what a record decided before reads as


def place(partition: int, offset: int) -> str:
    """Where a record was read from: the same after a crash, different for a channel's repeat."""
    return f"{partition}@{offset}"


def keep(before: Record, effects: Effects, where: str, wall: float) -> None:
    """Carry ``before``'s outbox into the profile ``effects`` writes, with what this
    decision sends added; entries older than :data:`KEEP_S` and beyond :data:`MOST` go."""
    if not isinstance(effects.record, Profile):
        return
    outbox = before.outbox if isinstance(before, Profile) else ()
    if outbox and wall - outbox[0].at >= KEEP_S:
        outbox = tuple(sent for sent in outbox if wall - sent.at < KEEP_S)
    decision = effects.decision
    commands = decision.commands if decision is not None and not decision.duplicate else []
    if commands or effects.sends:
        sent = Sent(where, wall, tuple(c.to_wire() for c in commands), tuple(e.to_wire() for e in effects.sends))
        outbox = (*outbox, sent)[-MOST:]
    if outbox != effects.record.outbox:
        effects.record = replace(effects.record, outbox=outbox)


def owed(before: Record, effects: Effects, where: str) -> tuple[Sent, ...]:
    """What the record read from ``where`` sent the first time, if this is it again."""
    if effects.counted not in REDELIVERED or not isinstance(before, Profile):
        return ()
    return tuple(sent for sent in before.outbox if sent.place == where)
