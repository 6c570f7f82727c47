"""Each customer's recent decisions in Redis, for ``orchestrator explain``.

One list per customer, ``<prefix>decisions:<customer key>``, oldest first,
holding the newest ``kept`` audit records as JSON (a merge joins the merged-away
profile's list to the survivor's in ``decided_at`` order, and readers order by it too,
telling an event decided again after a hand-over once: :func:`newest_decisions`). Writes are batched like the
read model's: the decision agent stages records and a background loop writes
each batch in one pipeline (RPUSH the records, then LTRIM to the newest
``kept``), so a burst of decisions costs a round trip per batch, not per event.
A failed flush keeps its records and retries; while Redis is away at most
``kept`` records per customer wait, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis

from orchestrator.batching import Flushes, FlushFailed, flush_forever

log = logging.getLogger(__name__)
T = TypeVar("T", bound=str | bytes)


def decisions_key(prefix: str, customer_key: str) -> str:
    return f"{prefix}decisions:{customer_key}"


class DecisionLogWriter:
    """Collects audit records per customer and appends them to Redis in batches."""

    def __init__(self, url: str, prefix: str, kept: int = 50, interval_s: float = 0.05, batch_max: int = 500) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._prefix = prefix
        self._kept = kept
        self._interval_s = interval_s
        self._batch_max = batch_max
        self._pending: dict[str, list[str]] = {}  # Redis key -> JSON records, oldest first
        self._deletes: set[str] = set()  # erased customers' lists
        self._moves: dict[str, str] = {}  # merged-away customer's list -> the survivor's
        self._count = 0
        self._full = asyncio.Event()
        self._flushes = Flushes(self._flush)

    @property
    def pending(self) -> int:
        """Records staged and not yet written."""
        return self._count

    def stage(self, customer_key: str, record: dict[str, Any]) -> None:
        """Queue one record; it is serialised now, so the caller may reuse the dict.

        A record that is not plain JSON is logged and dropped: the audit trail must
        never stop the decisions it describes."""
        try:
            text = json.dumps(record, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            log.warning("a decision record is not plain JSON, dropped: %s", exc)
            return
        key = decisions_key(self._prefix, customer_key)
        self._count -= len(self._pending.get(key, ()))
        records = self._pending.setdefault(key, [])
        records.append(text)
        del records[: -self._kept]  # older ones would be trimmed away in Redis anyway
        self._count += len(records)
        self._flushes.staged()
        if self._count >= self._batch_max:
            self._full.set()

    def forget(self, customer_keys: list[str]) -> None:
        """An erased customer's decisions go, staged ones included; later records start afresh."""
        for customer_key in customer_keys:
            key = decisions_key(self._prefix, customer_key)
            self._count -= len(self._pending.pop(key, ()))
            self._deletes.add(key)
        self._flushes.staged()
        self._full.set()

    def move(self, loser: str, winner: str) -> None:
        """A merged-away profile's decisions join the survivor's, so explain tells the whole story."""
        src, dst = decisions_key(self._prefix, loser), decisions_key(self._prefix, winner)
        staged = self._pending.pop(src, [])
        if staged:
            self._pending[dst] = newest_by_decision(self._pending.get(dst, []) + staged, self._kept)
        self._moves[src] = dst
        self._flushes.staged()
        self._full.set()

    async def run(self) -> None:
        """Flush forever; on cancellation flush once more so a clean stop loses nothing."""
        await flush_forever(self._flushes, self._full, self._interval_s, self._redis.aclose)

    async def flush(self) -> None:
        """Write what is staged, one flush at a time; :class:`FlushFailed` when Redis does not take it."""
        await self._flushes.flush()

    async def written(self) -> bool:
        """Flush; True when everything staged before the call is in Redis (an erasure waits
        for its decision lists to go, an offset commit for the records it covers)."""
        return await self._flushes.written()

    async def _flush(self) -> None:
        """Moves and deletes first, then appends in one pipeline; what fails is kept, staged
        first, for a later try after a pause, and :class:`FlushFailed` says so (:func:`flush_forever`)."""
        await self._apply_moves_and_deletes()
        await self._append()

    async def _append(self) -> None:
        if not self._pending:
            return
        batch, self._pending, self._count = self._pending, {}, 0
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key, records in batch.items():
                    pipe.rpush(key, *records)
                    pipe.ltrim(key, -self._kept, -1)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._restore(batch)
            raise FlushFailed(f"decision log flush of {len(batch)} customers failed: {exc}") from exc

    async def _apply_moves_and_deletes(self) -> None:
        """Before new records are appended (so not at all while these fail): a new profile
        under an erased key starts empty."""
        moves, self._moves = self._moves, {}
        deletes, self._deletes = self._deletes, set()
        try:
            for src, dst in moves.items():
                await self._move(src, dst)
            if deletes:
                await self._redis.delete(*deletes)
        except (redis.RedisError, OSError) as exc:
            self._moves = moves | self._moves
            self._deletes |= deletes
            raise FlushFailed(f"decision log moves/deletes failed: {exc}") from exc

    async def _move(self, src: str, dst: str) -> None:
        """The merged-away list, the survivor's and the survivor's staged records become one
        list, the newest ``kept`` by ``decided_at``: the merged-away profile's decisions may be
        older than the survivor's, and trimming joined lists by place would keep those and
        drop the survivor's newer ones. Both keys are watched, so a list written meanwhile
        fails the move, which is tried again with the staged records put back."""
        staged = self._pending.pop(dst, [])
        self._count -= len(staged)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                await pipe.watch(src, dst)
                theirs = await pipe.lrange(src, 0, -1)
                mine = await pipe.lrange(dst, 0, -1)
                pipe.multi()
                if theirs or staged:
                    pipe.delete(dst)
                    pipe.rpush(dst, *newest_by_decision([*mine, *theirs, *staged], self._kept))
                pipe.delete(src)
                await pipe.execute()
        except BaseException:
            if staged:
                self._restore({dst: staged})
            raise

    def _restore(self, batch: dict[str, list[str]]) -> None:
        """Put a failed batch back in front of what was staged meanwhile, still bounded."""
        for key, records in batch.items():
            merged = records + self._pending.get(key, [])
            self._pending[key] = merged[-self._kept :]
        self._count = sum(len(records) for records in self._pending.values())


def read_decisions(
    url: str, prefix: str, customer_key: str, limit: int = 20, timeout_s: float = 3.0
) -> list[dict[str, Any]]:
    """The customer's newest ``limit`` decisions, oldest first (by ``decided_at``); [] when there are none."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return newest_decisions(client, prefix, customer_key, limit)
    finally:
        client.close()


def newest_decisions(client: redis.Redis, prefix: str, customer_key: str, limit: int) -> list[dict[str, Any]]:
    """The same on a client the caller holds, for tools that ask Redis more than once.

    Ordered by when each was decided, not by place in the list: a merge orders the two lists
    it joins (:meth:`DecisionLogWriter.move`), but a list it joined before that did not, and a
    record staged for the merged-away profile after its move may still be older than the
    survivor's newest. The whole list is read: it holds at most ``kept`` records."""
    if limit < 1:
        return []
    records = [json.loads(item) for item in client.lrange(decisions_key(prefix, customer_key), 0, -1)]
    records.sort(key=_decided_at)  # stable: list order breaks ties
    return once_per_event(records)[-limit:]


def once_per_event(records: list[Any]) -> list[Any]:
    """The last record of each event, in order; those without an event id all stay.

    A worker that takes a customer over during a hand-over decides again the events whose
    decisions the worker before it logged but had not yet committed. Both records tell of
    the same event; the later is the one the customer's state carries on from."""
    last: dict[str | None, int] = {
        event_id: place for place, record in enumerate(records) if (event_id := _event_id(record))
    }
    return [record for place, record in enumerate(records) if last.get(_event_id(record), place) == place]


def newest_by_decision(items: Sequence[T], kept: int) -> list[T]:
    """The newest ``kept`` of a list's JSON records, oldest first by ``decided_at``."""
    decided = [_decided_at(json.loads(item)) for item in items]
    order = sorted(range(len(items)), key=decided.__getitem__)  # stable: list order breaks ties
    return [items[i] for i in order][-kept:]


def _event_id(record: Any) -> str | None:
    value = record.get("event_id") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def _decided_at(record: Any) -> float:
    value = record.get("decided_at") if isinstance(record, dict) else None
    return float(value) if isinstance(value, (int, float)) else 0.0
