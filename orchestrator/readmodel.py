"""The Redis read model: each customer's profile as JSON, for other systems to read.

Writes are batched: the decision agent stages profiles here and a background
loop flushes them with one ``MSET`` per batch, so a burst of events costs a
round trip per batch, not per event. A failed flush keeps its profiles (newer
ones win) and retries; the read model is eventually consistent by design.

Key layout (``prefix`` is the topic prefix):

* ``{prefix}customer:{key}``: the profile JSON, with the ranked next best actions
  per channel, so a channel asking "what now?" costs one GET and no computing;
* ``{prefix}alias:{kind}:{value}``: the customer key, one per identifier token
  (``customer_id:...`` included), so a customer can be found by any identifier.
  Values are the tokens stored in state: keyed hashes when a hash key is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import redis
import redis.asyncio as aioredis

from orchestrator import metrics
from orchestrator.batching import Flushes, FlushFailed, flush_forever
from orchestrator.core.lifecycle import stage
from orchestrator.core.nba import next_best_actions
from orchestrator.core.policy import Policy
from orchestrator.core.state import CustomerState
from orchestrator.identity.tokens import CUSTOMER_ID, Hasher, tokens_of

log = logging.getLogger(__name__)
INTERNAL_FIELDS = ("seen_ids",)
PUBLIC_FIELDS = tuple(f.name for f in fields(CustomerState) if f.name not in INTERNAL_FIELDS)
DEFAULT_POLICY = Policy()


def profile_key(prefix: str, customer_key: str) -> str:
    return f"{prefix}customer:{customer_key}"


def alias_key(prefix: str, token: str) -> str:
    """Where the customer key for an identifier token (``kind:value``) is kept."""
    return f"{prefix}alias:{token}"


def profile(state: CustomerState, now: float, policy: Policy = DEFAULT_POLICY) -> dict[str, Any]:
    """What the outside world sees of a customer: the state plus derived facts.

    The map shares the state's containers rather than copying them (a deep copy was a
    tenth of a worker's CPU): encode it at once, never change it."""
    doc = {name: getattr(state, name) for name in PUBLIC_FIELDS}
    doc["stage"] = stage(state, now)
    doc["next_best_actions"] = next_best_actions(state, now, policy)
    doc["updated_at"] = now
    return doc


def records(prefix: str, state: CustomerState, now: float, policy: Policy = DEFAULT_POLICY) -> dict[str, bytes]:
    """Every key one customer owns in the read model: the profile and an alias per identifier."""
    key = state.key.encode()
    found = {alias_key(prefix, token): key for token in alias_tokens(state)}
    found[profile_key(prefix, state.key)] = json.dumps(profile(state, now, policy)).encode()
    return found


def alias_tokens(state: CustomerState) -> list[str]:
    """Every token that names this customer: identifiers, customer id, and keys merged into it.

    A merged-away key keeps working as a lookup: ``cookie:ck-1`` is its own token,
    a bare customer id becomes ``customer_id:<id>``. The identity graph forgets the
    same tokens on erasure."""
    found = tokens_of(state.customer_id, state.identifiers)
    found += [alias if ":" in alias else f"{CUSTOMER_ID}:{alias}" for alias in getattr(state, "aliases", ())]
    return list(dict.fromkeys(found))


class ReadModelWriter:
    """Collects profiles and writes them to Redis in batches."""

    def __init__(
        self,
        url: str,
        prefix: str,
        interval_s: float = 0.05,
        batch_max: int = 500,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._prefix = prefix
        self._policy = policy
        self._interval_s = interval_s
        self._batch_max = batch_max
        self._pending: dict[str, tuple[CustomerState, float]] = {}
        self._deletes: set[str] = set()
        self._full = asyncio.Event()
        self._flushes = Flushes(self._flush)

    def stage(self, state: CustomerState, now: float) -> None:
        """Remember the newest state; it is rendered once per flush, not once per event.

        Safe because decide() never mutates a state it has returned."""
        key = profile_key(self._prefix, state.key)
        self._pending[key] = (state, now)
        self._deletes.discard(key)  # staged after a forget: the customer is back
        self._staged()

    def forget(self, customer_keys: Iterable[str] = (), tokens: Iterable[str] = ()) -> None:
        """Remove profiles (erased, or merged into another) and identifier aliases at the next flush.

        Anything staged for those keys is dropped; a profile staged later wins,
        and so does an alias that a profile in the same flush still claims."""
        for customer_key in customer_keys:
            key = profile_key(self._prefix, customer_key)
            self._pending.pop(key, None)
            self._deletes.add(key)
        self._deletes.update(alias_key(self._prefix, token) for token in tokens)
        self._staged()

    def _staged(self) -> None:
        self._flushes.staged()
        metrics.READMODEL_PENDING.set(len(self._pending) + len(self._deletes))
        if len(self._pending) + len(self._deletes) >= self._batch_max:
            self._full.set()

    async def run(self) -> None:
        """Flush forever; on cancellation flush once more so a clean stop loses nothing."""
        await flush_forever(self._flushes, self._full, self._interval_s, self._redis.aclose)

    async def aclose(self) -> None:
        """Flush what is staged and close the connection, for tools and tests that do not ``run()``
        (:class:`FlushFailed` when Redis does not take it; closed either way)."""
        try:
            await self.flush()
        finally:
            await self._redis.aclose()

    def _render(self, batch: dict[str, tuple[CustomerState, float]]) -> dict[str, bytes]:
        """One MSET's worth: profiles and aliases of the whole batch.

        A profile that cannot be rendered is logged and skipped: one bad state
        must not stop every other customer's read model from being written."""
        found: dict[str, bytes] = {}
        for state, now in batch.values():
            try:
                found |= records(self._prefix, state, now, self._policy)
            except Exception:
                metrics.READMODEL_ERRORS.inc()
                log.exception("cannot render the read model of %s; skipped", state.key)
        return found

    async def flush(self) -> None:
        """Write what is staged, one flush at a time; :class:`FlushFailed` when Redis does not take it."""
        await self._flushes.flush()

    async def written(self) -> bool:
        """Flush; True when everything staged before the call is in Redis (an erasure waits
        for its profiles and aliases to go, an offset commit for the profiles it covers)."""
        return await self._flushes.written()

    async def _flush(self) -> None:
        """One round trip: an MSET, or MSET and DEL in one transaction when something goes; what
        fails is staged again (newer profiles win) and :class:`FlushFailed` says so."""
        if not self._pending and not self._deletes:
            return
        batch, self._pending = self._pending, {}
        deletes, self._deletes = self._deletes, set()
        rendered = self._render(batch)
        deletes -= rendered.keys()
        try:
            await self._write(rendered, deletes)
        except (redis.RedisError, OSError) as exc:
            metrics.READMODEL_ERRORS.inc()
            self._pending = batch | self._pending
            self._deletes = (deletes - self._pending.keys()) | self._deletes
            metrics.READMODEL_PENDING.set(len(self._pending) + len(self._deletes))
            raise FlushFailed(f"read model flush of {len(batch)} profiles failed: {exc}") from exc
        metrics.READMODEL_WRITES.inc(len(batch))
        metrics.READMODEL_PENDING.set(len(self._pending) + len(self._deletes))

    async def _write(self, rendered: dict[str, bytes], deletes: set[str]) -> None:
        if not deletes:
            if rendered:
                await self._redis.mset(rendered)
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            if rendered:
                pipe.mset(rendered)
            pipe.delete(*sorted(deletes))
            await pipe.execute()


def lookup_keys(prefix: str, ident: str, hasher: Hasher) -> tuple[str, str]:
    """Where to look for ``ident`` in one MGET: the profile, if it is a customer key, and
    the alias, if it is an identifier typed as a user would (``email:Alice@Example.com``).

    A bare id is also tried as ``customer_id:<id>``, which finds a profile merged into
    another one."""
    token = hasher.lookup_token(ident) if ":" in ident else f"{CUSTOMER_ID}:{ident}"
    return profile_key(prefix, ident), alias_key(prefix, token)


def resolve_key(client: redis.Redis, prefix: str, ident: str, hasher: Hasher) -> str | None:
    """The customer key ``ident`` names (a key with a profile, or any identifier), or None."""
    raw, alias = client.mget(*lookup_keys(prefix, ident, hasher))
    if raw is not None:
        return ident
    return alias.decode() if isinstance(alias, bytes) else alias


def read_profile(url: str, prefix: str, ident: str, hasher: Hasher, timeout_s: float = 3.0) -> dict[str, Any] | None:
    """Synchronous lookup by customer key or identifier, for the CLI and other tools;
    ``hasher`` is the deployment's, so a raw e-mail address finds its keyed hash."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        key = resolve_key(client, prefix, ident, hasher)
        raw = None if key is None else client.get(profile_key(prefix, key))
    finally:
        client.close()
    return None if raw is None else json.loads(raw)
