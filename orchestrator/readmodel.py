"""The Redis read model: each customer's profile as JSON, for other systems to read.

Writes are batched: the decision agent stages profiles here and a background
loop flushes them with one ``MSET`` per batch, so a burst of events costs a
round trip per batch, not per event. A failed flush keeps its profiles (newer
ones win) and retries; the read model is eventually consistent by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import redis
import redis.asyncio as aioredis

from orchestrator import metrics
from orchestrator.core.lifecycle import stage
from orchestrator.core.state import CustomerState

log = logging.getLogger(__name__)
INTERNAL_FIELDS = ("seen_ids",)


def profile_key(prefix: str, customer_key: str) -> str:
    return f"{prefix}customer:{customer_key}"


def profile(state: CustomerState, now: float) -> dict[str, Any]:
    """What the outside world sees of a customer: the state plus derived facts."""
    doc = state.to_dict()
    for name in INTERNAL_FIELDS:
        doc.pop(name, None)
    doc["stage"] = stage(state, now)
    doc["updated_at"] = now
    return doc


class ReadModelWriter:
    """Collects profiles and writes them to Redis in batches."""

    def __init__(self, url: str, prefix: str, interval_s: float = 0.05, batch_max: int = 500) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._prefix = prefix
        self._interval_s = interval_s
        self._batch_max = batch_max
        self._pending: dict[str, tuple[CustomerState, float]] = {}
        self._full = asyncio.Event()

    def stage(self, state: CustomerState, now: float) -> None:
        """Remember the newest state; it is rendered once per flush, not once per event.

        Safe because decide() never mutates a state it has returned."""
        self._pending[profile_key(self._prefix, state.key)] = (state, now)
        metrics.READMODEL_PENDING.set(len(self._pending))
        if len(self._pending) >= self._batch_max:
            self._full.set()

    async def run(self) -> None:
        """Flush forever; on cancellation flush once more so a clean stop loses nothing."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):  # a quiet interval still flushes
                    await asyncio.wait_for(self._full.wait(), self._interval_s)
                self._full.clear()
                await self.flush()
        finally:
            await asyncio.shield(self.flush())
            await self._redis.aclose()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await self._redis.mset({key: json.dumps(profile(s, t)).encode() for key, (s, t) in batch.items()})
        except (redis.RedisError, OSError) as exc:
            metrics.READMODEL_ERRORS.inc()
            log.warning("read model flush of %d profiles failed, will retry: %s", len(batch), exc)
            self._pending = batch | self._pending
            await asyncio.sleep(min(1.0, self._interval_s * 10))
        else:
            metrics.READMODEL_WRITES.inc(len(batch))
        metrics.READMODEL_PENDING.set(len(self._pending))


def read_profile(url: str, prefix: str, customer_key: str, timeout_s: float = 3.0) -> dict[str, Any] | None:
    """Synchronous lookup for the CLI and other tools."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        raw = client.get(profile_key(prefix, customer_key))
    finally:
        client.close()
    return None if raw is None else json.loads(raw)
