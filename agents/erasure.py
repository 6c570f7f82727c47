"""An erasure forgets the profile in the table last, after what carries it on has left.

Erasing a profile sends an erase to the key of every identifier that points at it, an
audit record, and deletes for the Redis read model and decision log; only the profile
knows those keys. Written the usual way (table first, the rest with the producer's next
batch and the writers' next flush), a worker killed in between would restart with the
profile gone: the erasure read again finds nothing, reports ``found: false``, and the
pointers and read-model entries that died with the worker stay. So while an erase is
decided the table's writes are held (:class:`HeldWrites`), everything else is sent and
flushed (:func:`settle`), and only then is the profile deleted. Killed before that, the
worker reads the erase again and finds the profile still there: it is erased again, and
pointers that were erased already are erased once more, which changes nothing.

Nothing is forgotten before it has all arrived (:func:`settle`), however long that takes:
the erasure's messages are awaited one by one (a producer's ``flush`` also returns when
a batch has expired unsent), sent again if they failed, and the Redis deletes are tried
until Redis takes them. The partition waits meanwhile, which is the price of an erasure
that cannot be lost: a broker that takes nothing holds every partition up anyway, and an
outage of Redis long enough to matter shows as ``orchestrator_erasures_waiting``. A
rebalance in that time ends in the watchdog's restart (``agents.rebalance_watchdog``),
and the erasure, never committed, is read again. A worker told to stop gives the wait up
(Faust would wait for the record in hand until the worker is killed): the profile stays,
no offset is committed again (``agents.commit_hold.commit_no_more``), and the restarted
worker reads the erasure again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator import metrics
from orchestrator.batching import Written

log = logging.getLogger(__name__)

WAIT_S = 30.0  # how long to wait for an erasure's messages before saying it is waiting

_DELETED = None

Deliveries = list["asyncio.Future[Any]"]  # what the producer returned for each message sent


class HeldWrites:
    """The customers table as :mod:`agents.decide` uses it, with writes held until :meth:`commit`."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.held: dict[bytes, bytes | None] = {}

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        if key in self.held:
            value = self.held[key]
            return default if value is _DELETED else value
        return self.table.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.held[key] = value

    def __delitem__(self, key: bytes) -> None:
        self.held[key] = _DELETED

    def commit(self) -> None:
        for key, value in self.held.items():
            if value is not _DELETED:
                self.table[key] = value
            elif self.table.get(key) is not None:
                del self.table[key]
        self.held.clear()


async def settle(
    deliveries: Deliveries,
    send_again: Callable[[], Awaitable[Deliveries]],
    written: Written,
    stopping: Callable[[], bool] = lambda: False,
    retry_s: float = WAIT_S,
) -> bool:
    """True once the erasure's messages are on the broker and ``written()`` says Redis has its deletes;
    False if the worker is told to stop first (``stopping()``, looked at about once a second).

    A message that failed has the erasure's messages sent again (``send_again``): erasing a
    pointer twice changes nothing, and the audit topic may then show the erasure twice. A worker
    stopping gives up the wait rather than being killed at the end of its grace period; the
    caller then keeps the profile and commits no offset again (``agents.commit_hold``), so the
    erasure is read again after the restart."""
    waiting, said = False, -retry_s
    pause_s = min(retry_s, 1.0)  # between looks at ``stopping()``
    try:
        while not stopping():
            pending, failed = await _undelivered(deliveries, pause_s)
            unwritten = not await written()
            if not (pending or failed or unwritten):
                return True
            if not waiting:
                waiting = True
                metrics.ERASURES_WAITING.inc()
            if time.monotonic() - said >= retry_s:  # once a while, not once a retry
                said = time.monotonic()
                log.warning(
                    "an erasure waits: %d message(s) not delivered yet, %d failed (sent again), Redis "
                    "deletes %s; the profile is forgotten only when all are done",
                    len(pending),
                    len(failed),
                    "not written yet" if unwritten else "written",
                )
            if failed:
                deliveries = pending + await send_again()
            elif unwritten:
                await asyncio.sleep(pause_s)
        return False
    finally:
        if waiting:
            metrics.ERASURES_WAITING.dec()


async def _undelivered(deliveries: Deliveries, wait_s: float) -> tuple[Deliveries, Deliveries]:
    """Those of ``deliveries`` still in the producer after ``wait_s``, and those that failed."""
    if deliveries:
        await asyncio.wait(deliveries, timeout=wait_s)
    pending = [d for d in deliveries if not d.done()]
    failed = [d for d in deliveries if d.done() and (d.cancelled() or d.exception() is not None)]
    return pending, failed
