"""Write this worker's exact journey tallies to Redis, a field per partition it processes,
so ``orchestrator journeys list`` can say how many customers are inside each version across
the group (the format and why: :mod:`orchestrator.journeys.inside`).

Redis is a convenience here, as for the group clock: when it cannot be reached the worker
goes on, logs it once per outage, and ``list`` shows the figures' age.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

from agents.redis_client import TimerRedis
from orchestrator.journeys.inside import entry, inside_key
from orchestrator.outage import Outage

log = logging.getLogger(__name__)
PUBLISH_S = 5.0  # how often a worker writes its partitions' figures (they are tiny)


@dataclass
class InsidePublisher:
    url: str = field(repr=False)  # its password must not reach a log through a repr
    prefix: str
    worker: str  # host:port, as the group clock names it
    partitions: int  # of the customers table, so readers can tell which are missing
    every_s: float = PUBLISH_S
    _last: float = field(default=-math.inf, repr=False)
    _connection: TimerRedis = field(init=False, repr=False)
    _outage: Outage = field(
        default_factory=lambda: Outage("writing the journey tallies to Redis (for 'journeys list')", log), repr=False
    )

    def __post_init__(self) -> None:
        self._connection = TimerRedis(self.url)

    async def publish(self, counts: Mapping[int, Mapping[Hashable, int]], wall: float) -> None:
        """Write the partitions counted exactly (``counts``), at most once per ``every_s``."""
        if not counts or wall - self._last < self.every_s:
            return
        self._last = wall
        fields = {str(p): entry(_places(tally), wall, self.worker, self.partitions) for p, tally in counts.items()}
        try:
            await self._redis().hset(inside_key(self.prefix), mapping=fields)  # type: ignore[arg-type]  # the stub wants Mapping[str | bytes | ..., ...] exactly
        except (redis.RedisError, OSError) as exc:
            self._outage.failed(exc)
            return
        self._outage.succeeded()

    async def close(self) -> None:
        await self._connection.close()

    def _redis(self) -> aioredis.Redis:
        return self._connection.client()


def _places(tally: Mapping[Hashable, int]) -> dict[Any, int]:
    """The tally's (journey, version, step) labels; anything else in it is not a place."""
    return {label: n for label, n in tally.items() if isinstance(label, tuple) and len(label) == 3}
