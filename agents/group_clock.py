"""The inbound clock of the whole group: no wait fires while any worker is still reading
events from before it.

:mod:`agents.inbound_clock` holds a worker's timer back while *its own* ingest agent
reads a backlog. That covers a customer whose events come in through inbound
partitions of the same number as their customer-events partition, which the same
worker owns: channels that key events by customer id. Events keyed otherwise (by a
session, a cookie, a store) may be read by another worker. If that worker is behind
(it restarted, took partitions over, or is overloaded), a purchase made before the
wait was due can reach the customer's partition after the wait fired.

So each worker's timer publishes its own inbound clock in one Redis hash,
``<prefix>inbound-clocks`` (field: the worker, value: ``"<published at> <clock>"``, the
clock ``inf`` while the worker is not held back), and fires waits only up to the lowest
clock held back in the group. An entry not renewed for :data:`STALE_S` stops holding
anyone back: its worker stopped, is recovering its tables (it reads nothing meanwhile,
and its own clock only starts after recovery), or cannot reach Redis. That is the same
rule as :data:`agents.inbound_clock.QUIET_S` for a partition nothing comes from: waits
are never stuck, only late by a few seconds. Entries older than :data:`FORGET_S` are
deleted by whichever worker sees them, so workers that are gone leave nothing behind.

Redis is a convenience here, not a dependency: when it cannot be reached, a worker
falls back to its own clock (and logs it once per outage). The published times are
each worker's wall clock, so hosts need synchronised clocks (NTP), as wall-clock waits
do anyway; a skew shortens or lengthens how long an entry stays fresh by as much.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis

from orchestrator.outage import Outage

log = logging.getLogger(__name__)
STALE_S = 3.0  # an entry not renewed for this long holds no one back
FORGET_S = 600.0  # an entry this old is deleted
TIMEOUT_S = 0.5  # a tick does not wait longer for Redis than this


def clocks_key(prefix: str) -> str:
    return f"{prefix}inbound-clocks"


def entry(clock: float, wall: float) -> str:
    """What a worker publishes: when, and its clock; ``inf`` when it holds no one back."""
    return f"{wall:.3f} {clock if clock < wall else math.inf!r}"


def lowest(
    local: float, wall: float, entries: Mapping[bytes, bytes], me: bytes, stale_s: float = STALE_S
) -> tuple[float, list[bytes]]:
    """The group's clock: ``local``, or lower while a fresh entry of another worker is
    lower; and the fields old enough to delete. An entry that does not parse is skipped."""
    clock, gone = local, []
    for worker, value in entries.items():
        if worker == me:
            continue  # this worker's own, from its last tick: ``local`` is newer
        try:
            published, held = (float(part) for part in value.split())
        except ValueError:
            continue
        if wall - published > FORGET_S:
            gone.append(worker)
        elif wall - published <= stale_s:
            clock = min(clock, held)
    return clock, gone


@dataclass
class GroupClock:
    """One worker's share of the group's inbound clock (see the module's docstring)."""

    url: str
    prefix: str
    worker: str
    stale_s: float = STALE_S
    _client: aioredis.Redis | None = field(default=None, repr=False)
    _outage: Outage = field(
        default_factory=lambda: Outage("the group's inbound clock in Redis (this worker's own is used)", log),
        repr=False,
    )

    async def clock(self, local: float, wall: float) -> float:
        """Publish ``local``, this worker's inbound clock, and return the group's."""
        key, me = clocks_key(self.prefix), self.worker.encode()
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                pipe.hset(key, me, entry(local, wall))
                pipe.hgetall(key)
                _, entries = await pipe.execute()
            clock, gone = lowest(local, wall, entries, me, self.stale_s)
            if gone:
                await self._redis().hdel(key, *gone)
        except (redis.RedisError, OSError) as exc:
            self._outage.failed(exc)
            return local
        self._outage.succeeded()
        return clock

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(self.url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        return self._client
