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
clock held back in the group.

A worker can stop publishing for three reasons, and they are told apart:

* it stops cleanly: it deletes its entry as it leaves (:meth:`GroupClock.leave`);
* it is in a rebalance, or recovering its tables after one: it reads nothing meanwhile,
  and says so. It publishes the time it stopped reading (:meth:`GroupClock.paused`), for
  at most :data:`PAUSE_HOLD_S`: recovery can take minutes, and the group's waits would
  all be late by as much. Once it processes again, its own clock holds the partitions it
  took over until it reads their backlog (:mod:`agents.inbound_clock`);
* it died, hangs, or cannot reach Redis: its entry is not renewed. For :data:`STALE_S`
  it holds as it was. After that it holds the group at the time it was last published
  (it read nothing after that), until this worker is in a rebalance that began after the
  entry went stale (:func:`silent`, :class:`RebalanceStart`). A rebalance that begins
  after a worker died ends without it, so its partitions then have an owner, whose own
  clock holds them until it reads their backlog. Before, while Kafka's session timeout
  ran, nobody read them, and a wait elsewhere could fire before a purchase waiting there.
  A stale entry holds for at most ``hold_s`` after it was published (twice the session
  timeout and :data:`HOLD_MARGIN_S`), so waits are never stuck, only late.

Entries older than :data:`FORGET_S` are deleted by whichever worker sees them, so
workers that are gone leave nothing behind.

Redis is a convenience here, not a dependency: when it cannot be reached, a worker
falls back to its own clock (and logs it once per outage). The published times are
each worker's wall clock, so hosts need synchronised clocks (NTP), as wall-clock waits
do anyway; a skew shortens or lengthens how long an entry stays fresh by as much.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis

from agents.redis_client import TimerRedis
from orchestrator.outage import Outage

log = logging.getLogger(__name__)
STALE_S = 3.0  # an entry not renewed for this long holds as its worker last published it
PAUSE_HOLD_S = 30.0  # a worker in a rebalance or recovery holds the group this long at most
HOLD_MARGIN_S = 10.0  # a stale entry holds for at most twice the session timeout and this
FORGET_S = 600.0  # an entry this old is deleted


def hold_for(session_timeout_s: float) -> float:
    """How long a silent worker's entry holds at most: its partitions get an owner within
    the session timeout, and the rebalance that gives them one may take as long again."""
    return 2 * session_timeout_s + HOLD_MARGIN_S


def clocks_key(prefix: str) -> str:
    return f"{prefix}inbound-clocks"


def entry(clock: float, wall: float) -> str:
    """What a worker publishes: when, and its clock; ``inf`` when it holds no one back."""
    return f"{wall:.3f} {clock if clock < wall else math.inf!r}"


def lowest(
    local: float,
    wall: float,
    entries: Mapping[bytes, bytes],
    me: bytes,
    stale_s: float = STALE_S,
    held_by_silent: Collection[bytes] = (),
) -> tuple[float, list[bytes]]:
    """The group's clock: ``local``, or lower while a fresh entry of another worker is
    lower, or a stale one of a worker in ``held_by_silent``; and the fields old enough to
    delete. An entry that does not parse is skipped."""
    clock, gone = local, []
    for worker, (published, held) in _parsed(entries, me).items():
        age = wall - published
        if age > FORGET_S:
            gone.append(worker)
        elif age <= stale_s:
            clock = min(clock, held)
        elif worker in held_by_silent:
            clock = min(clock, held, published)  # it read nothing after it published
    return clock, gone


def silent(
    wall: float,
    entries: Mapping[bytes, bytes],
    me: bytes,
    rebalance_after: float,
    hold_s: float,
    stale_s: float = STALE_S,
) -> set[bytes]:
    """The other workers whose entries are stale but still hold: they went stale after the
    rebalance this worker is in began (after ``rebalance_after``), so it may not have left
    them out, and they were published no more than ``hold_s`` ago."""
    return {
        worker
        for worker, (published, _) in _parsed(entries, me).items()
        if stale_s < wall - published <= hold_s and published + stale_s > rebalance_after
    }


def _parsed(entries: Mapping[bytes, bytes], me: bytes) -> dict[bytes, tuple[float, float]]:
    """(published at, clock) of each entry but this worker's own, which ``local`` supersedes."""
    parsed = {}
    for worker, value in entries.items():
        try:
            published, held = (float(part) for part in value.split())
        except ValueError:
            continue
        if worker != me:
            parsed[worker] = (published, held)
    return parsed


@dataclass
class RebalanceStart:
    """A time before the rebalance this worker is in began: its last tick in the one
    before, or when it started. A rebalance that began after a worker fell silent left it
    out, whether or not this worker saw it publish."""

    generation: int = 0
    after: float = field(default_factory=time.time)
    last_tick: float = field(default_factory=time.time)

    def tick(self, generation: int, wall: float) -> float:
        if generation != self.generation:
            self.generation, self.after = generation, self.last_tick
        self.last_tick = wall
        return self.after


@dataclass
class GroupClock:
    """One worker's share of the group's inbound clock (see the module's docstring)."""

    url: str = field(repr=False)  # its password must not reach a log through a repr
    prefix: str
    worker: str
    stale_s: float = STALE_S
    hold_s: float = hold_for(60.0)  # Faust's default session timeout
    _rebalance: RebalanceStart = field(default_factory=RebalanceStart, repr=False)
    _holding_for: set[bytes] = field(default_factory=set, repr=False)  # silent workers last tick, to log changes
    _last: float = field(default=math.inf, repr=False)  # the clock it last published
    _paused_since: float | None = field(default=None, repr=False)
    _left: bool = field(default=False, repr=False)
    _publishing: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)  # a leave waits for a tick's write
    _connection: TimerRedis = field(init=False, repr=False)
    _outage: Outage = field(
        default_factory=lambda: Outage("the group's inbound clock in Redis (this worker's own is used)", log),
        repr=False,
    )

    def __post_init__(self) -> None:
        self._connection = TimerRedis(self.url)

    async def clock(self, local: float, wall: float, generation: int = 0) -> float:
        """Publish ``local``, this worker's inbound clock, and return the group's.
        ``generation``: the rebalances this worker has been through, all ended."""
        async with self._publishing:
            return await self._clock(local, wall, generation)

    async def _clock(self, local: float, wall: float, generation: int) -> float:
        if self._left:
            return local
        self._paused_since, self._last = None, local
        key, me = clocks_key(self.prefix), self.worker.encode()
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                pipe.hset(key, me, entry(local, wall))
                pipe.hgetall(key)
                _, entries = await pipe.execute()
            held_by = silent(wall, entries, me, self._rebalance.tick(generation, wall), self.hold_s, self.stale_s)
            self._log_silences(held_by)
            clock, gone = lowest(local, wall, entries, me, self.stale_s, held_by)
            if gone:
                await self._redis().hdel(key, *gone)
        except (redis.RedisError, OSError) as exc:
            self._outage.failed(exc)
            return local
        self._outage.succeeded()
        return clock

    async def paused(self, wall: float, generation: int) -> None:
        """Publish that this worker reads nothing now (a rebalance, or recovery): held at
        the time it stopped, or its clock then if lower, for at most :data:`PAUSE_HOLD_S`."""
        async with self._publishing:
            await self._paused(wall, generation)

    async def _paused(self, wall: float, generation: int) -> None:
        self._rebalance.tick(generation, wall)
        if self._left:
            return
        if self._paused_since is None:
            self._paused_since = wall
        held = min(self._paused_since, self._last) if wall - self._paused_since <= PAUSE_HOLD_S else math.inf
        try:
            await self._redis().hset(clocks_key(self.prefix), self.worker, entry(held, wall))
        except (redis.RedisError, OSError) as exc:
            self._outage.failed(exc)

    async def leave(self) -> None:
        """A clean stop: delete this worker's entry, so it holds no one back, and close."""
        async with self._publishing:  # a tick's write in flight would put the entry back
            self._left = True
            try:
                await self._redis().hdel(clocks_key(self.prefix), self.worker)
            except (redis.RedisError, OSError) as exc:
                log.warning("cannot delete this worker's inbound clock from Redis: %s", exc)
            else:
                log.info("deleted this worker's inbound clock from Redis: it holds no one's waits back")
        await self.close()

    def _log_silences(self, held_by: set[bytes]) -> None:
        for worker in sorted(held_by - self._holding_for):
            log.info("worker %s stopped publishing its inbound clock: waits hold until a rebalance", worker.decode())
        for worker in sorted(self._holding_for - held_by):
            log.info(
                "worker %s no longer holds waits back (it is back, the group rebalanced, or it held long enough)",
                worker.decode(),
            )
        self._holding_for = held_by

    async def close(self) -> None:
        await self._connection.close()

    def _redis(self) -> aioredis.Redis:
        return self._connection.client()
