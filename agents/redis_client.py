"""An asyncio Redis client for a worker's timers, made on first use and with short timeouts:
a tick that writes to Redis (the group clock, the journey tallies) must not wait on it long."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis

TIMEOUT_S = 0.5  # a tick does not wait longer for Redis than this


@dataclass
class TimerRedis:
    url: str = field(repr=False)  # its password must not reach a log through a repr
    timeout_s: float = TIMEOUT_S
    _client: aioredis.Redis | None = field(default=None, repr=False)

    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
