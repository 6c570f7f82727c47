"""The Redis read model: each customer's profile as JSON, for other systems to read.

Writes are batched: the decision agent stages profiles here and a background
loop flushes them with one script call per batch, so a burst of events costs a
round trip per batch, not per event. A failed flush keeps its profiles (newer
ones win) and retries; the read model is eventually consistent by design.

Writes are ordered across workers. Each profile is staged with the offset of the
record it follows in the customer's partition, and Redis keeps a profile's offset
next to it for :data:`ORDER_WINDOW_S`; a write or delete older than the one there
is refused (:data:`WRITE_IN_ORDER`). Without this a worker that hands a partition
over could land its last batch after the new owner's newer profile, and the stale
profile stayed until the customer's next event. The window bounds the memory to
recently written customers, and lets a deployment whose topics were recreated
(offsets starting again at 0) write again after it, rather than never.

Key layout (``prefix`` is the topic prefix):

* ``{prefix}customer:{key}``: the profile JSON, with the ranked next best actions
  per channel, so a channel asking "what now?" costs one GET and no computing;
* ``{prefix}alias:{kind}:{value}``: the customer key, one per identifier token
  (``customer_id:...`` included), so a customer can be found by any identifier.
  Values are the tokens stored in state: keyed hashes when a hash key is set;
* ``{prefix}offset:{key}``: the offset of the profile's last write or delete, for
  :data:`ORDER_WINDOW_S` after it (internal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import orjson
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
ORDER_WINDOW_S = 600  # how long Redis remembers a profile's offset: hand-overs take seconds

# KEYS and ARGV in groups, ARGV[1] being the window in ms. A group is ARGV (op, offset, n)
# and KEYS (the profile's offset key, then n keys); op "s" sets the n keys to the group's n
# values in ARGV, op "d" deletes them, and either is refused when the offset key holds a
# higher offset. Op "x" deletes its n keys whatever the order, and has no offset key.
# Returns how many groups were refused.
WRITE_IN_ORDER = """
local k, a, refused = 1, 2, 0
while a <= #ARGV do
  local op, offset, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local known = false
  if op ~= 'x' then
    known = redis.call('GET', KEYS[k])
    k = k + 1
  end
  if known and tonumber(known) > tonumber(offset) then
    refused = refused + 1
  else
    if op ~= 'x' then
      redis.call('SET', KEYS[k - 1], offset, 'PX', ARGV[1])
    end
    for i = 0, n - 1 do
      if op == 's' then
        redis.call('SET', KEYS[k + i], ARGV[a + i])
      else
        redis.call('DEL', KEYS[k + i])
      end
    end
  end
  k = k + n
  if op == 's' then
    a = a + n
  end
end
return refused
"""


def profile_key(prefix: str, customer_key: str) -> str:
    return f"{prefix}customer:{customer_key}"


def offset_key(prefix: str, customer_key: str) -> str:
    """Where the offset of a profile's last write is kept (see :data:`WRITE_IN_ORDER`)."""
    return f"{prefix}offset:{customer_key}"


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
    found[profile_key(prefix, state.key)] = encode_profile(profile(state, now, policy))
    return found


def encode_profile(doc: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON. orjson, not ``json``: a profile with its ranked actions is some
    kilobytes, and a worker renders one per customer per flush (3x faster: ``make bench``).
    Non-string keys become strings, as ``json.dumps`` makes them."""
    return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)


def decode_profile(raw: bytes | str) -> dict[str, Any]:
    """A profile as :func:`encode_profile` (or an older worker, with ``json``) wrote it.
    orjson too: the API decodes one per request for a few ranked actions (2x faster than
    ``json.loads``: ``make bench``). Neither writer puts a NaN in a profile, the one thing
    ``json.loads`` reads and orjson refuses: events carry none, and orjson writes null."""
    doc: dict[str, Any] = orjson.loads(raw)
    return doc


def alias_tokens(state: CustomerState) -> list[str]:
    """Every token that names this customer: identifiers, customer id, and keys merged into it.

    A merged-away key keeps working as a lookup: ``cookie:ck-1`` is its own token,
    a bare customer id becomes ``customer_id:<id>``. The identity graph forgets the
    same tokens on erasure."""
    found = tokens_of(state.customer_id, state.identifiers)
    found += [alias if ":" in alias else f"{CUSTOMER_ID}:{alias}" for alias in getattr(state, "aliases", ())]
    return list(dict.fromkeys(found))


Group = tuple[str, int, dict[str, bytes]]  # customer key, offset, its keys and values


class ReadModelWriter:
    """Collects profiles and writes them to Redis in batches, in order across workers."""

    def __init__(
        self,
        url: str,
        prefix: str,
        interval_s: float = 0.05,
        batch_max: int = 500,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._write_in_order = self._redis.register_script(WRITE_IN_ORDER)
        self._prefix = prefix
        self._policy = policy
        self._interval_s = interval_s
        self._batch_max = batch_max
        self._pending: dict[str, tuple[CustomerState, float, int]] = {}
        self._removed: dict[str, int] = {}  # customer key -> offset of the record that removed it
        self._unaliased: set[str] = set()  # alias keys
        self._full = asyncio.Event()
        self._flushes = Flushes(self._flush)

    def stage(self, state: CustomerState, now: float, offset: int) -> None:
        """Remember the newest state; it is rendered once per flush, not once per event.
        ``offset``: the record's in the customer's partition (tools writing alone pass 0).

        Safe because decide() never mutates a state it has returned."""
        self._pending[state.key] = (state, now, offset)
        self._removed.pop(state.key, None)  # staged after a forget: the customer is back
        self._staged()

    def forget(self, customer_keys: Iterable[str], tokens: Iterable[str], offset: int) -> None:
        """Remove profiles (erased, or merged into another) and identifier aliases at the next flush.

        Anything staged for those keys is dropped; a profile staged later wins,
        and so does an alias that a profile in the same flush still claims. An alias
        goes whatever its order: an erasure must not leave an identifier behind."""
        for customer_key in customer_keys:
            self._pending.pop(customer_key, None)
            self._removed[customer_key] = offset
        self._unaliased.update(alias_key(self._prefix, token) for token in tokens)
        self._staged()

    def _count(self) -> int:
        return len(self._pending) + len(self._removed) + len(self._unaliased)

    def _staged(self) -> None:
        self._flushes.staged()
        metrics.READMODEL_PENDING.set(self._count())
        if self._count() >= self._batch_max:
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

    def _render(self, batch: dict[str, tuple[CustomerState, float, int]]) -> list[Group]:
        """Each profile's keys (profile and aliases), with its key and offset.

        A profile that cannot be rendered is logged and skipped: one bad state
        must not stop every other customer's read model from being written."""
        found = []
        for state, now, offset in batch.values():
            try:
                found.append((state.key, offset, records(self._prefix, state, now, self._policy)))
            except Exception:
                metrics.READMODEL_ERRORS.inc()
                log.exception("cannot render the read model of %s; skipped", state.key)
        return found

    async def flush(self) -> None:
        """Write what is staged, one flush at a time; :class:`FlushFailed` when Redis does not take it."""
        await self._flushes.flush()

    async def written(self) -> bool:
        """Flush; True when everything staged before the call is in Redis (an erasure waits
        for its profiles and aliases to go, an offset commit for the profiles it covers).
        A write refused as older than the one in Redis counts as written."""
        return await self._flushes.written()

    async def _flush(self) -> None:
        """One round trip, one script call; what fails is staged again (newer profiles win)
        and :class:`FlushFailed` says so."""
        if not self._count():
            return
        batch, self._pending = self._pending, {}
        removed, self._removed = self._removed, {}
        unaliased, self._unaliased = self._unaliased, set()
        groups = self._render(batch)
        claimed = {key for _, _, keys in groups for key in keys}
        try:
            refused = await self._write(groups, removed, unaliased - claimed)
        except (redis.RedisError, OSError) as exc:
            metrics.READMODEL_ERRORS.inc()
            self._pending = batch | self._pending
            self._removed = {key: at for key, at in removed.items() if key not in self._pending} | self._removed
            self._unaliased |= unaliased
            metrics.READMODEL_PENDING.set(self._count())
            raise FlushFailed(f"read model flush of {len(batch)} profiles failed: {exc}") from exc
        metrics.READMODEL_WRITES.inc(len(batch))
        metrics.READMODEL_REFUSED.inc(refused)
        metrics.READMODEL_PENDING.set(self._count())

    async def _write(self, groups: list[Group], removed: dict[str, int], unaliased: set[str]) -> int:
        """The script call (:data:`WRITE_IN_ORDER`); returns how many writes it refused as stale."""
        keys: list[str] = []
        args: list[Any] = [ORDER_WINDOW_S * 1000]
        for customer_key, offset in removed.items():
            keys += [offset_key(self._prefix, customer_key), profile_key(self._prefix, customer_key)]
            args += ["d", offset, 1]
        if unaliased:
            keys += sorted(unaliased)
            args += ["x", 0, len(unaliased)]
        for customer_key, offset, written in groups:
            keys += [offset_key(self._prefix, customer_key), *written]
            args += ["s", offset, len(written), *written.values()]
        return int(await self._write_in_order(keys=keys, args=args))


def lookup_keys(prefix: str, ident: str, hasher: Hasher) -> tuple[str, str]:
    """Where to look for ``ident`` in one MGET: the profile, if it is a customer key, and
    the alias, if it is an identifier typed as a user would (``email:Alice@Example.com``).

    A bare id is also tried as ``customer_id:<id>``, which finds a profile merged into
    another one."""
    token = hasher.lookup_token(ident) if ":" in ident else f"{CUSTOMER_ID}:{ident}"
    return profile_key(prefix, ident), alias_key(prefix, token)


def not_found(ident: str) -> str:
    """The answer for an id nothing is stored under, with how to write a customer id."""
    return f"no customer {ident!r} in the read model{spelling_hint(ident)}"


def spelling_hint(ident: str) -> str:
    """What to add to any tool's not-found answer for ``ident``: the one spelling users miss, a
    customer id with a colon in it written as its token, or it reads as an identifier; else ''."""
    spelt = ident.startswith(f"{CUSTOMER_ID}:") or ":" not in ident
    return "" if spelt else f" (if that is a customer id: {CUSTOMER_ID}:{ident})"


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
    return None if raw is None else decode_profile(raw)
