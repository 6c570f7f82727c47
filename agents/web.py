"""The worker's web port: ``/metrics`` for Prometheus, ``/ready`` for probes; exact key counts.

The ``orchestrator_customers`` and ``orchestrator_timers_pending`` gauges are exact counts,
not RocksDB's ``estimate-num-keys`` (which counts every put still in a memtable, Faust's
offset key included, so it read about twice the truth). A :class:`CountedTable` wraps a
table and keeps a count per partition: each write through it adds its difference, and
after a start or a rebalance each active partition is counted once, in chunks between
other work (:meth:`KeyCounts.advance`), because recovery writes to RocksDB directly.
Writes that arrive while a partition is being counted are exact too: a write to a key the
count has already passed adds its difference; one ahead of it is seen when the count
gets there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import faust

from orchestrator import metrics

log = logging.getLogger(__name__)
OFFSET_KEY = b"__faust\0offset__"  # Faust's own key in every partition's RocksDB
COUNT_CHUNK = 20_000  # keys counted per partition and step: a few milliseconds
COUNT_INTERVAL_S = 1.0


def attach_web(app: faust.App, table: CountedTable, runtime: Any) -> None:
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
        total = table.counts.advance(active_dbs(app, table))
        if total is not None:
            metrics.CUSTOMERS.set(total)


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
    count: int = 0
    passed: bytes | None = None  # counted every key up to this one; None: not started
    done: bool = False

    def change(self, key: bytes, delta: int) -> None:
        if self.done or (self.passed is not None and key <= self.passed):
            self.count += delta


class KeyCounts:
    """Exact number of keys (that ``counts`` accepts the value of) per active partition."""

    def __init__(self, app: Any, counts: Callable[[bytes], bool] | None = None) -> None:
        self.app = app
        self.counts = counts  # None: every key counts, and values are not even read
        self.parts: dict[int, PartitionCount] = {}
        self.generation = rebalances(app)

    def changed(self, partition: int | None, key: bytes, delta: int) -> None:
        """A write through the table: ``delta`` is the change in counted keys it made."""
        if delta == 0 or partition is None or rebalances(self.app) != self.generation:
            return  # a partition not counted yet (or any, after a rebalance) is counted from RocksDB
        part = self.parts.get(partition)
        if part is not None:
            part.change(key, delta)

    def counted(self, value: bytes | None) -> int:
        return 0 if value is None else int(self.counts is None or self.counts(value))

    def advance(self, dbs: list[tuple[int, Any]], chunk: int = COUNT_CHUNK) -> int | None:
        """Count a little more; the total over ``dbs`` once every one is counted, else None."""
        generation = rebalances(self.app)
        if generation != self.generation:  # a rebalance: recovery wrote behind our back
            self.parts.clear()
            self.generation = generation
        active = {p for p, _ in dbs}
        for stale in [p for p in self.parts if p not in active]:
            del self.parts[stale]
        complete = True
        for partition, db in dbs:
            part = self.parts.setdefault(partition, PartitionCount())
            if not part.done:
                self._count_some(part, db, chunk)
                complete = complete and part.done
        return sum(self.parts[p].count for p in active) if complete else None

    def _count_some(self, part: PartitionCount, db: Any, chunk: int) -> None:
        start = b"" if part.passed is None else part.passed + b"\0"
        for seen, (key, value) in enumerate(self._entries(db, start), 1):
            part.passed = key
            if key != OFFSET_KEY:
                part.count += 1 if self.counts is None else self.counted(value)
            if seen >= chunk:
                return
        part.done = True

    def _entries(self, db: Any, start: bytes) -> Iterator[tuple[bytes, bytes | None]]:
        if self.counts is None:
            return ((key, None) for key in db.keys(from_key=start))
        return iter(db.items(from_key=start))

    def total(self) -> int | None:
        if rebalances(self.app) != self.generation or not all(p.done for p in self.parts.values()):
            return None
        return sum(p.count for p in self.parts.values())


class CountedTable:
    """A Faust table whose writes keep :class:`KeyCounts` exact; reads go straight through.

    The decide agent writes through this; Faust's own recovery writes to RocksDB directly,
    which is why a rebalance starts the count of each partition again."""

    def __init__(self, table: Any, app: Any, counts: Callable[[bytes], bool] | None = None) -> None:
        self.table = table
        self.counts = KeyCounts(app, counts)

    def get(self, key: bytes, default: Any = None) -> Any:
        return self.table.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        old = self.table.get(key)
        self.table[key] = value
        self.counts.changed(current_partition(), key, self.counts.counted(value) - self.counts.counted(old))

    def __delitem__(self, key: bytes) -> None:
        old = self.table.get(key)
        del self.table[key]
        self.counts.changed(current_partition(), key, -self.counts.counted(old))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)
