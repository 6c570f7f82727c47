"""The worker's web port: ``/metrics`` for Prometheus, ``/ready`` for probes; exact key counts.

The ``orchestrator_customers``, ``orchestrator_timers_pending`` and
``orchestrator_journey_customers`` gauges are exact counts, not RocksDB's
``estimate-num-keys`` (which counts every put still in a memtable, Faust's offset key
included, so it read about twice the truth). A :class:`CountedTable` wraps a table and
keeps tallies per partition (:class:`KeyCounts`: how many keys, or what their values hold,
such as the journey steps customers are at): each write through it adds its difference,
and after a start or a rebalance each active partition is counted once, because recovery
writes to RocksDB directly. That count runs in steps of a few milliseconds with other work
between them (:meth:`KeyCounts.advance`), up to a budget each second (:func:`spend`): a
fixed share of a core however many partitions there are to count, and no stall longer than
a step for the records waiting behind it.
Writes that arrive while a partition is being counted are exact too: a write to a key the
count has already passed adds its difference; one ahead of it is seen when the count
gets there.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from agents.inside import InsidePublisher
from orchestrator import metrics
from orchestrator.settings import Settings

log = logging.getLogger(__name__)
OFFSET_KEY = b"__faust\0offset__"  # Faust's own key in every partition's RocksDB
COUNT_CHUNK = 2_500  # keys counted per step: ~6 ms (a value read and checked: ~2.4 us)
DECODE_CHUNK = 500  # keys per step when where a profile is in its journeys is read: ~4 ms (~7 us each)
COUNT_INTERVAL_S = 1.0
COUNT_BUDGET_S = 0.2  # counting after a start or rebalance takes at most this of each interval
KEYS = "keys"  # what a plain count tallies: one per key that counts
Tally = Callable[[bytes], Mapping[Any, int]]


def worker_name(settings: Settings) -> str:
    """How a worker names itself to the others in Redis: unique per worker, and the same
    after a restart."""
    return f"{socket.gethostname()}:{settings.web_port}"


def attach_web(app: faust.App, table: CountedTable, runtime: Any, settings: Settings) -> None:
    inside = InsidePublisher(settings.redis_url, settings.topic_prefix, worker_name(settings), settings.partitions)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        body, content_type = metrics.exposition()
        # The full type (with version and charset) goes in the header: aiohttp
        # refuses a content_type argument that carries parameters.
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """200 once tables are recovered, journeys loaded and no rebalance is under way."""
        ok = processing(app) and runtime.catalogue_ready.is_set()
        return web.json({"ready": ok}, status=200 if ok else 503)

    @app.timer(interval=COUNT_INTERVAL_S)
    async def count_customers() -> None:
        if app.rebalancing:
            return
        await spend(COUNT_BUDGET_S, lambda: count_step(app, table))
        for tallies in table.tallies:  # one: where customers are in their journeys
            await inside.publish(tallies.exact(), time.time())  # for 'orchestrator journeys list'

    on_shutdown(app, inside.close)


def count_step(app: faust.App, table: CountedTable) -> bool:
    """Count a chunk more and set the gauges that are complete; whether there is nothing
    more to count now (all counted, or a rebalance began between steps)."""
    if app.rebalancing:
        return True
    total, places = count_more(table.counts, table.tallies, active_dbs(app, table))
    if total is not None:
        metrics.CUSTOMERS.set(total[KEYS])
    for found in places:
        if found is not None:
            metrics.set_journey_customers(found)
    return total is not None and all(found is not None for found in places)


def count_more(
    counts: KeyCounts,
    tallies: Sequence[KeyCounts],
    dbs: list[tuple[int, Any]],
    chunk: int = COUNT_CHUNK,
    decode: int = DECODE_CHUNK,
) -> tuple[Counter[Hashable] | None, list[Counter[Hashable] | None]]:
    """One step of the recount: the keys ``chunk`` further, where profiles are in their
    journeys ``decode`` further; each total once it is complete, else None."""
    return counts.advance(dbs, chunk), [tally.advance(dbs, decode) for tally in tallies]


async def spend(budget_s: float, step: Callable[[], bool], clock: Callable[[], float] = time.monotonic) -> None:
    """Run ``step`` until it is done or ``budget_s`` is spent, letting the agents run between
    steps: the worker keeps deciding while it counts."""
    started = clock()
    while not step() and clock() - started < budget_s:
        await asyncio.sleep(0)


def on_shutdown(app: faust.App, then: Callable[[], Awaitable[None]]) -> None:
    """Run ``then`` on Faust's ``on_before_shutdown``, sent once the consumer has left the group."""

    async def run(sender: Any, **_: Any) -> None:
        await then()

    handler: Callable[..., Awaitable[None]] = run  # the signal's own type wants a keyword the senders add
    app.on_before_shutdown.connect(handler)


def processing(app: faust.App) -> bool:
    """Whether the worker processes records: its tables are recovered and no rebalance is under way."""
    tables: Any = app.tables  # the TableManager has .recovery; its interface type does not say so
    return bool(tables.recovery.completed.is_set() and not app.rebalancing)


def active_dbs(app: faust.App, table: Any) -> list[tuple[int, Any]]:
    """(partition, RocksDB) of the table's partitions this worker processes."""
    from faust.types import TP

    store = table.data
    actives = app.assignor.assigned_actives()
    topic = table.changelog_topic.get_topic_name()
    return [(p, db) for p, db in list(getattr(store, "_dbs", {}).items()) if TP(topic, p) in actives]


def rebalances(app: Any) -> int:
    """How many rebalances this worker has been through: what it knew of its partitions
    before the last one (counts, cursors, wakes in flight) must be built again."""
    return int(getattr(app, "rebalancing_count", 0))


def current_partition() -> int | None:
    """The partition of the event being processed: the one Faust writes a table change to."""
    from faust.streams import current_event

    event = current_event()
    return None if event is None else int(event.message.partition)


@dataclass
class PartitionCount:
    count: Counter[Hashable] = field(default_factory=Counter)
    passed: bytes | None = None  # counted every key up to this one; None: not started
    done: bool = False

    def covers(self, key: bytes) -> bool:
        """Whether the count has passed ``key``: a write there changes it; one ahead, not yet."""
        return self.done or (self.passed is not None and key <= self.passed)

    def change(self, key: bytes, delta: Mapping[Hashable, int]) -> None:
        if self.covers(key):
            self.count.update(delta)


class KeyCounts:
    """Exact tallies per active partition: of the keys (that ``counts`` accepts the value of),
    under :data:`KEYS`, or, with ``tally``, of what each value holds (a profile's journey steps)."""

    def __init__(self, app: Any, counts: Callable[[bytes], bool] | None = None, tally: Tally | None = None) -> None:
        self.app = app
        self.counts = counts  # None (and no tally): every key counts, and values are not even read
        self.tally = tally
        self.parts: dict[int, PartitionCount] = {}
        self.generation = rebalances(app)

    @property
    def reads_values(self) -> bool:
        return self.counts is not None or self.tally is not None

    def wrote(self, partition: int | None, key: bytes, old: bytes | None, new: bytes | None) -> None:
        """A write through the table, from ``old`` to ``new``: the difference is worked out
        (a decode per value, for a tally) only where it counts."""
        part = self._counting(partition)
        if part is not None and part.covers(key) and (delta := self.difference(old, new)):
            part.change(key, delta)

    def exact(self) -> dict[int, Counter[Hashable]]:
        """The tallies of each partition counted to the end since the last rebalance: exact now."""
        if rebalances(self.app) != self.generation:
            return {}
        return {p: part.count for p, part in self.parts.items() if part.done}

    def _counting(self, partition: int | None) -> PartitionCount | None:
        """The partition's count that a write there changes; None for a partition not counted
        yet (or any, after a rebalance): those are counted from RocksDB."""
        if partition is None or rebalances(self.app) != self.generation:
            return None
        return self.parts.get(partition)

    def counted(self, value: bytes | None) -> Mapping[Hashable, int]:
        """What one value adds to the tallies."""
        if value is None:
            return _NOTHING
        if self.tally is not None:
            return self.tally(value)
        return _ONE if self.counts is None or self.counts(value) else _NOTHING

    def difference(self, old: bytes | None, new: bytes | None) -> Counter[Hashable]:
        """What replacing ``old`` by ``new`` changes in the tallies (None: no value)."""
        before, after = self.counted(old), self.counted(new)
        if before == after:  # most writes: the customer is where they were
            return Counter()
        delta = Counter(after)
        delta.subtract(before)
        return Counter({label: n for label, n in delta.items() if n})

    def advance(self, dbs: list[tuple[int, Any]], chunk: int = COUNT_CHUNK) -> Counter[Hashable] | None:
        """Count ``chunk`` keys more, partition after partition; the tallies over ``dbs`` once
        every one is counted, else None."""
        generation = rebalances(self.app)
        if generation != self.generation:  # a rebalance: recovery wrote behind our back
            self.parts.clear()
            self.generation = generation
        active = {p for p, _ in dbs}
        for stale in [p for p in self.parts if p not in active]:
            del self.parts[stale]
        complete, left = True, chunk
        for partition, db in dbs:
            part = self.parts.setdefault(partition, PartitionCount())
            if not part.done and left > 0:
                left -= self._count_some(part, db, left)
            complete = complete and part.done
        if not complete:
            return None
        total: Counter[Hashable] = Counter()
        for p in active:
            total.update(self.parts[p].count)
        return Counter({label: n for label, n in total.items() if n})

    def _count_some(self, part: PartitionCount, db: Any, chunk: int) -> int:
        """Count up to ``chunk`` keys of the partition; how many were seen."""
        start = b"" if part.passed is None else part.passed + b"\0"
        keys = seen = 0  # a plain count adds up here: a Counter update per key costs a microsecond
        try:
            for seen, (key, value) in enumerate(self._entries(db, start), 1):
                part.passed = key
                if key == OFFSET_KEY:
                    pass
                elif self.tally is not None:
                    part.count.update(self.counted(value))
                elif value is None or self.counts is None or self.counts(value):
                    keys += 1
                if seen >= chunk:
                    return seen
            part.done = True
            return seen
        finally:
            if keys:
                part.count[KEYS] += keys

    def _entries(self, db: Any, start: bytes) -> Iterator[tuple[bytes, bytes | None]]:
        if not self.reads_values:
            return ((key, None) for key in db.keys(from_key=start))
        return iter(db.items(from_key=start))


class CountedTable:
    """A Faust table whose writes keep :class:`KeyCounts` exact; reads go straight through
    (the last one is remembered).

    ``counts`` tallies the keys (``orchestrator_customers``); each of ``tallies``, what
    their values hold. The decide agent writes through this; Faust's own recovery writes to
    RocksDB directly, which is why a rebalance starts the count of each partition again.

    A write needs the value it replaces. The decide agent has just read it (it reads a
    customer, decides, writes), so the last value read or written is kept and a write of
    that key takes it instead of reading RocksDB again (about a sixth of what a write cost in
    a py-spy profile). It holds within a rebalance generation only: every other write goes
    through here."""

    def __init__(
        self,
        table: Any,
        app: Any,
        counts: Callable[[bytes], bool] | None = None,
        tallies: Sequence[Tally] = (),
    ) -> None:
        self.table = table
        self.app = app
        self.counts = KeyCounts(app, counts)
        self.tallies = [KeyCounts(app, tally=tally) for tally in tallies]
        self._last: tuple[int, bytes, bytes | None] | None = None  # generation, key, value

    def get(self, key: bytes, default: Any = None) -> Any:
        value = self.table.get(key)
        self._last = (rebalances(self.app), key, value)
        return default if value is None else value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        old = self._current(key)
        self.table[key] = value
        self._changed(key, old, value)

    def __delitem__(self, key: bytes) -> None:
        old = self._current(key)
        del self.table[key]
        self._changed(key, old, None)

    def _current(self, key: bytes) -> bytes | None:
        """What ``key`` holds: the value last read or written, if that was this key's in this
        generation, else from the table."""
        last = self._last
        if last is not None and last[1] == key and last[0] == rebalances(self.app):
            return last[2]
        value: bytes | None = self.table.get(key)
        return value

    def _changed(self, key: bytes, old: bytes | None, new: bytes | None) -> None:
        self._last = (rebalances(self.app), key, new)
        partition = current_partition()
        for counts in (self.counts, *self.tallies):
            counts.wrote(partition, key, old, new)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)


_ONE: Mapping[Hashable, int] = {KEYS: 1}
_NOTHING: Mapping[Hashable, int] = {}
