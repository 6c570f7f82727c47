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

Only the records decided since the last commit can come back (Faust flushes the producer
before each commit), and most of their commands did leave before the crash. So before
sending a command again, :class:`Delivered` reads the action topic back from a little
before the decision and skips the action ids already there. A copy then goes out only
if that read fails, or if a worker that lost its partitions without dying (a long pause)
still delivers after the read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from orchestrator.core.commands import Command
from orchestrator.identity.graph import MERGE_CONFIRMED, Effects
from orchestrator.identity.records import Forward, Profile, Record, Sent

log = logging.getLogger(__name__)

MOST = 4  # records remembered per customer: the few a customer has between two commits
KEEP_S = 3600.0  # an entry this old is dropped at the customer's next write: long committed
SKEW_S = 60.0  # read the action topics from this long before a decision: clocks of workers differ
REDELIVERED = frozenset({"duplicate", "stale_wake"})  # what a record decided before reads as


def place(partition: int, offset: int) -> str:
    """Where a record was read from: the same after a crash, different for a channel's repeat."""
    return f"{partition}@{offset}"


def keep(before: Record, effects: Effects, where: str, wall: float) -> None:
    """Carry ``before``'s outbox into the profile or pointer ``effects`` writes, with what
    this decision sends added; entries older than :data:`KEEP_S` and beyond :data:`MOST` go.

    A pointer keeps one too: a profile merged into another becomes a pointer in the same
    write that hands its state over, and that hand-over, like the commands of the records
    just before it, must go out again if the merge is read again; until the survivor says
    it has the state. Then the pointer drops the hand-over, the copy of the state, but
    keeps the commands: the records before the merge may not be committed yet (see
    :func:`_without_hand_overs`)."""
    if not isinstance(effects.record, (Profile, Forward)):
        return
    outbox = before.outbox if isinstance(before, (Profile, Forward)) else ()
    if effects.counted == MERGE_CONFIRMED:
        outbox = _without_hand_overs(outbox)
    if outbox and wall - outbox[0].at >= KEEP_S:
        outbox = tuple(sent for sent in outbox if wall - sent.at < KEEP_S)
    decision = effects.decision
    commands = decision.commands if decision is not None and not decision.duplicate else []
    if commands or effects.sends:
        sent = Sent(where, wall, tuple(c.to_wire() for c in commands), tuple(e.to_wire() for e in effects.sends))
        outbox = (*outbox, sent)[-MOST:]
    if outbox != effects.record.outbox:
        effects.record = replace(effects.record, outbox=outbox)


def _without_hand_overs(outbox: tuple[Sent, ...]) -> tuple[Sent, ...]:
    """A confirmed pointer's outbox: its entries' commands, without what they sent on.

    The survivor's confirmation can be read on the loser's partition before the offsets of
    the records ahead of it are committed. A worker killed then reads those records again at
    the pointer, and their commands may have died in its producer. What stays is a few
    commands per pointer; they go with its next write after :data:`KEEP_S`, like any outbox's."""
    return tuple(replace(sent, sends=()) for sent in outbox if sent.commands)


def owed(before: Record, effects: Effects, where: str, wall: float) -> tuple[Sent, ...]:
    """What the record read from ``where`` sent the first time, if this is it again.

    At a profile only a record that decides nothing new (a duplicate, a stale wake) can be a
    redelivery; at a pointer every record is forwarded, so the place alone tells. Entries
    older than :data:`KEEP_S` are long committed, whatever their place (a pointer is seldom
    written again, and a topic created anew starts its offsets over)."""
    if isinstance(before, Profile) and effects.counted not in REDELIVERED:
        return ()
    if not isinstance(before, (Profile, Forward)):
        return ()
    return tuple(sent for sent in before.outbox if sent.place == where and wall - sent.at < KEEP_S)


Lookup = Callable[[str, float], set[str]]  # (channel, since) -> action ids on its topic since then


@dataclass
class Delivered:
    """Which owed commands are on their action topics already, read back once per channel and
    kept: a restart's redelivered records all ask about the same few seconds. Read again when
    a command was decided outside what was read (another worker's, handed over later)."""

    lookup: Lookup  # blocking: run in a thread, so the worker's heartbeats go on
    _read: dict[str, tuple[float, float, set[str]]] = field(default_factory=dict)  # channel: (since, until, ids)

    async def unsent(self, owed: tuple[Sent, ...]) -> list[Command]:
        """The owed commands not on their topics; all of them if a topic cannot be read."""
        commands = [Command(**wire) for sent in owed for wire in sent.commands]
        if not commands:
            return []
        unsent = await self._absent(commands, min(sent.at for sent in owed), max(sent.at for sent in owed))
        log.debug(
            "a record read again after a restart owed %d command(s): %d sent again, the others had left",
            len(commands),
            len(unsent),
        )
        return unsent

    async def not_on_topics(self, commands: list[Command], since: float, until: float) -> list[Command]:
        """``commands`` but those another worker sent between ``since`` and ``until``: a record
        in doubt after a hand-over (:mod:`agents.handover`) at ``until``."""
        return await self._absent(commands, since, until)

    async def _absent(self, commands: list[Command], oldest: float, newest: float) -> list[Command]:
        """The commands not on their topics, decided between ``oldest`` and ``newest``."""
        there: set[str] = set()
        for channel in sorted({c.channel for c in commands}):
            there |= await self._ids(channel, oldest, newest)
        return [c for c in commands if c.action_id not in there]

    async def _ids(self, channel: str, oldest: float, newest: float) -> set[str]:
        read = self._read.get(channel)
        if read is not None and read[0] <= oldest - SKEW_S and newest < read[1]:
            return read[2]
        since, until = oldest - SKEW_S, time.time()
        try:
            ids = await asyncio.to_thread(self.lookup, channel, since)
        except Exception as exc:  # unreadable for any reason: a copy is the safe side of a loss
            log.warning("cannot tell which commands on %s were sent already (%r): sending them again", channel, exc)
            ids = set()  # and for the rest of this window too: one minute lost, not one per record
        else:
            log.info(
                "read %s back, for commands a restart or a hand-over may send twice: %d action ids", channel, len(ids)
            )
        self._read[channel] = (since, until, ids)
        return ids
