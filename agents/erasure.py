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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

FLUSH_FOR_S = 30.0  # a producer that cannot deliver in this long is stuck: forget the profile anyway

_DELETED = None


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


async def settle(*flushes: Callable[[], Awaitable[None]]) -> None:
    """Wait until the producer and the Redis writers have sent what the erasure staged.

    The writers retry a failed flush later on their own; a producer that cannot deliver
    within :data:`FLUSH_FOR_S` is logged, and the profile is forgotten anyway: holding the
    partition up would stop every other customer on it."""
    for flush in flushes:
        try:
            await asyncio.wait_for(flush(), FLUSH_FOR_S)
        except TimeoutError:
            log.warning("an erasure's messages did not leave within %.0f s; forgetting the profile anyway", FLUSH_FOR_S)
