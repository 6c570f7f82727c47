"""Offsets are committed only for records whose Redis writes are done.

The Redis writers batch (a flush every ``ORCH_READMODEL_FLUSH_INTERVAL_S``, 50 ms by
default), and Faust commits the offsets of the records processed so far on its own
schedule (every ``BROKER_COMMIT_INTERVAL``, and when partitions are revoked). A commit that
fell between a record's processing and the flush of its profile used to leave, after a
SIGKILL, that profile stale in Redis until the customer's next event, and a merged-away
profile there for good: the record was not read again, so nothing repaired it.

So the commit is put in order: Faust picks the offsets it will commit, then the writers
flush everything staged so far (which covers every record up to those offsets: a record
is staged before it is acknowledged), and only then are the offsets committed. While
Redis does not take the writes within :data:`WAIT_S`, the commit is skipped
(``orchestrator_commits_held_total``) and tried again at the next one; records past the last
commit are read again after a crash, and a record read again writes its profile again.

Faust's ``Consumer._commit_tps`` (faust-streaming 0.15) picks the offsets and commits them in
one step, so it is replaced here by the same steps with the writers' flush between. Picking is
not a peek: ``_new_offset`` takes the offsets it covers off the consumer's acked list, and a
commit skipped without putting them back would stop all later commits of the partition (Faust
then sees a gap at the head of the list; the broker test of this module found it). So a held
commit puts back what picking took (:func:`_put_back`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from faust.exceptions import ProducerSendError
from faust.transport.consumer import Consumer

from orchestrator import metrics
from orchestrator.batching import Written
from orchestrator.outage import Outage

log = logging.getLogger(__name__)
WAIT_S = 5.0  # how long a commit waits for Redis before it is skipped
_WRITTEN = "_orchestrator_written"  # the app's check that Redis has everything staged
_NEVER = "_orchestrator_commit_never"  # set when the worker must commit nothing more


def install(app: Any, written: Written) -> None:
    """Commit ``app``'s offsets only once ``written()`` says Redis has what they cover."""
    setattr(app, _WRITTEN, written)
    if getattr(Consumer, "_orchestrator_commit_hold", False):
        return
    as_shipped = Consumer._commit_tps

    async def _commit_tps(self: Any, tps: Iterable[Any], start_new_transaction: bool) -> bool:
        written = getattr(self.app, _WRITTEN, None)
        if written is None:  # an app of another tool: Faust's own commit
            return bool(await as_shipped(self, tps, start_new_transaction))
        tps = list(tps)
        acked = _acked(self, tps)
        offsets = self._filter_committable_offsets(tps)
        if not offsets:
            return False
        if getattr(self.app, _NEVER, False) or not await in_redis(written):
            _put_back(self, acked, offsets)
            metrics.COMMITS_HELD.inc()
            return False
        try:
            await self._handle_attached(offsets)  # as Faust does: messages attached to offsets
        except ProducerSendError as exc:
            await self.crash(exc)
            return False
        return bool(await self._commit_offsets(offsets, start_new_transaction=start_new_transaction))

    Consumer._commit_tps = _commit_tps  # type: ignore[method-assign]
    Consumer._orchestrator_commit_hold = True  # type: ignore[attr-defined]


def commit_no_more(app: Any) -> None:
    """Commit no offset again in this process: a record in hand was left undone (an erasure
    given up as the worker stops) and must be read again after the restart, with all after it."""
    setattr(app, _NEVER, True)


async def in_redis(written: Written, wait_s: float = WAIT_S) -> bool:
    """``written()``, or False after ``wait_s``; the flush goes on in the background then
    (a flush is shielded: :meth:`orchestrator.batching.Flushes.flush`)."""
    try:
        answer = await asyncio.wait_for(written(), wait_s)
    except TimeoutError:
        answer = False
    if answer:
        HELD.succeeded()
    else:
        HELD.failed(f"Redis has not taken the writes of the records processed (waited {wait_s:.0f} s)")
    return answer


REPEAT_S = 60.0
# A commit is tried every few seconds and the writers' flush loops warn of a Redis outage
# themselves: held commits are told when they begin, once a minute while they last, and
# when they end, not once per held commit.
HELD = Outage("committing offsets", log, repeat_s=REPEAT_S)


Acked = dict[Any, tuple[list[int], Any]]  # per partition: acked offsets and gaps (an IntervalTree)


def _acked(consumer: Any, tps: list[Any]) -> Acked:
    """Faust's acked offsets and gaps of ``tps``, before picking takes from them."""
    return {tp: (list(consumer._acked[tp]), consumer._gap[tp].copy()) for tp in tps}


def _put_back(consumer: Any, before: Acked, offsets: Mapping[Any, int]) -> None:
    """Undo what picking ``offsets`` took off the acked lists; offsets acked since stay."""
    for tp in offsets:
        acked, gap = before[tp]
        index = consumer._acked_index[tp]
        for offset in acked:
            if offset not in index:
                index.add(offset)
                consumer._acked[tp].append(offset)
        if gap:
            merged = consumer._gap[tp] | gap
            merged.merge_overlaps()
            consumer._gap[tp] = merged
