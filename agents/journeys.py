"""Journeys in the stream: the published catalogue, and durable timers for waits.

**Catalogue.** Every worker reads the whole compacted ``orchestrator.journeys``
topic with its own group-less consumer (a Faust agent would share its
partitions between workers, and Faust's GlobalTable has known recovery bugs),
so a new version is live on every worker within a second, without a restart.

**Timers.** A customer's waits live in their state; a second table, ``due``,
indexes them by time: one key ``"<wake, zero-padded>|<customer>"`` per customer
with a pending wait, written and deleted by the decide agent in the customer's
own partition, so it is changelog-backed and moves with the customer on a
rebalance. Faust timers run on every worker and cannot write tables, so the
timer only *sends* a wake to the customer's partition of the customer-events
topic; the decide agent fires the wait and moves the index.

Each tick costs what is due, not what has fired before: RocksDB keeps keys
sorted, and a :class:`DueCursor` per partition remembers where the last tick
stopped, so the next one *seeks* there instead of stepping again over the keys
that fired since (deleted keys stay in RocksDB as tombstones until compaction).
A key written below that place (a wait that is already due) moves it back.

A wake is sent once and tracked until it has been processed: the decide agent
has handled the record at the wake's own offset, which it reports to
:class:`JourneyRuntime` (Faust has no public way to read a consumer's progress,
and its committed offsets lag behind what was handled). Only then, if its key is still
there (the wake failed to send, or its processing failed), is it sent again,
after :data:`RETRY_AFTER_S`. So a worker that is behind does not add duplicate
wakes to its backlog. A wake lost with a crash or a rebalance is sent again
because the new owner (or the restarted worker) starts with no wakes in flight
and sends every due key once. A wake sent twice is harmless: the second finds
nothing due and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
import msgpack
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.group_clock import GroupClock, hold_for
from agents.inbound_clock import InboundProgress
from agents.web import (
    KEYS,
    CountedTable,
    active_dbs,
    current_partition,
    on_shutdown,
    processing,
    rebalances,
    worker_name,
)
from orchestrator import metrics
from orchestrator.core.decide import WAKE
from orchestrator.core.event import Event
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import InvalidJourney, valid_journeys
from orchestrator.kafka.clients import COMPACTED, ensure_topics
from orchestrator.settings import Settings
from orchestrator.topics import TopicNames

log = logging.getLogger(__name__)
RETRY_AFTER_S = 30.0  # a wake processed without taking its key along is sent again after this
RETRY_FAILED_SEND_S = 1.0  # a wake the producer could not send
MAX_IN_FLIGHT = 10_000  # wakes in flight per partition: bounds a tick's work and memory when far behind
PENDING, PROCESSED, FAILED = "pending", "processed", "failed"
KEY_PRECISION_S = 0.001  # a due key's time is its wait's, rounded to this (``_key_time``'s three decimals)


def _key_time(at: float) -> bytes:
    """A time as due keys hold it: fixed width, so keys sort by time; see :data:`KEY_PRECISION_S`."""
    return f"{at:017.3f}|".encode()


def due_key(wake: float, customer: bytes) -> bytes:
    return _key_time(wake) + customer


def due_limit(clock: float) -> bytes:
    """The highest key due by ``clock``, so that every wait a key at or below it names is due.

    A key holds its wait's due time rounded to the millisecond, up to half a millisecond
    below it: a key in the same millisecond as ``clock`` may name a wait due just after it.
    Its wake would find nothing due by the clock it carries, and be sent again only after
    :data:`RETRY_AFTER_S`; so keys are taken only up to a millisecond before the clock."""
    return _key_time(clock - KEY_PRECISION_S) + b"\xff"


def parse_due_key(key: bytes) -> tuple[float, bytes]:
    wake, _, customer = key.partition(b"|")
    return float(wake), customer


@dataclass
class JourneyRuntime:
    engine: Engine
    catalogue_ready: asyncio.Event = field(default_factory=asyncio.Event)
    watermarks: dict[int, float] = field(default_factory=dict)  # event-time mode, per partition
    handled: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> last offset
    inbound: InboundProgress = field(default_factory=InboundProgress)  # wall-clock mode: see agents.inbound_clock
    group: GroupClock | None = None  # wall-clock mode: the other workers' inbound clocks (agents.group_clock)

    def done(self, topic: str, partition: int, offset: int) -> None:
        """The decide agent has finished with the record at ``offset`` (fired, written and
        sent what it had to, or dead-lettered it): the wakes up to it are processed."""
        self.handled[(topic, partition)] = offset

    def processed(self, metadata: Any) -> bool:
        """Whether the decide agent has handled the record a send's metadata names."""
        tp = metadata.topic_partition
        return self.handled.get((tp.topic, tp.partition), -1) >= metadata.offset

    def observe(self, partition: int, ts: float) -> None:
        """Event time: an event of ``partition`` stamped ``ts`` arrived; the partition's
        watermark, which the timer's clock follows, never moves backwards."""
        if ts > self.watermarks.get(partition, 0.0):
            self.watermarks[partition] = ts


def attach_journeys(
    app: faust.App, settings: Settings, names: TopicNames, customer_events: Any, inbound: InboundProgress
) -> Any:
    """Wire the catalogue feed and the timer; return (runtime, due table)."""
    engine = Engine(Catalogue(), settings.max_active_journeys, settings.default_timezone)
    for journey in _files(settings):
        engine.catalogue.add(journey)
    runtime = JourneyRuntime(engine, inbound=inbound, group=_group_clock(settings, app.conf.broker_session_timeout))
    ensure_topics(settings.kafka_bootstrap, [names.journeys], 1, COMPACTED, settings.replication_factor)
    due = TimerIndex(
        app.Table("due", partitions=settings.partitions, key_type=bytes, value_type=bytes, default=None),
        app,
        wall_clock=settings.clock == "wall",
    )

    @app.task
    async def follow_catalogue() -> None:
        await _follow_catalogue(settings.kafka_bootstrap, names.journeys, runtime)

    @app.timer(interval=settings.timer_interval_s)
    async def send_wakes() -> None:
        if not processing(app):  # nothing is processed before recovery ends, and the inbound clock starts after it
            if runtime.group is not None:
                await runtime.group.paused(time.time(), rebalances(app))
            return
        await _send_due_wakes(app, due, customer_events, runtime, settings, names)

    if runtime.group is not None:
        on_shutdown(app, runtime.group.leave)

    return runtime, due


def _group_clock(settings: Settings, session_timeout_s: float) -> GroupClock | None:
    if settings.clock != "wall" or not settings.shared_inbound_clock:
        return None
    worker = worker_name(settings)
    return GroupClock(settings.redis_url, settings.topic_prefix, worker, hold_s=hold_for(session_timeout_s))


def _files(settings: Settings) -> list[Any]:
    if settings.journeys_dir is None:
        return []
    return valid_journeys(settings.journeys_dir)


async def _follow_catalogue(bootstrap: str, topic: str, runtime: JourneyRuntime) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while True:
            if await consumer.position(tp) >= end:
                runtime.catalogue_ready.set()
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    _apply_published(runtime.engine.catalogue, record.key, record.value)
            catalogue = runtime.engine.catalogue
            metrics.JOURNEYS_LOADED.set(sum(len(v) for v in catalogue.versions.values()))
            metrics.JOURNEYS_UNLOADABLE.set(sum(len(v) for v in catalogue.unloadable.values()))
    finally:
        await consumer.stop()


def _apply_published(catalogue: Catalogue, key: bytes | None, value: bytes | None) -> None:
    """One catalogue topic record, live (see :meth:`Catalogue.apply`): a version or its removal,
    a retirement marker or its removal. A record that means nothing is logged and skipped."""
    name = (key or b"").decode(errors="replace")
    try:
        change = catalogue.apply(name, None if value is None else value.decode())
    except InvalidJourney as exc:
        log.error(
            "cannot load published journey %s (its customers wait, untouched, for a worker that can): %s", name, exc
        )
        return
    except ValueError as exc:  # BadRecord, UnicodeDecodeError
        log.error("ignoring catalogue record %r: %s", name, exc)
        return
    except Exception:  # one odd record must not stop every later version reaching this worker
        log.exception("ignoring catalogue record %r", name)
        return
    log.info("%s", change)


@dataclass
class InFlight:
    """A wake on its way; ``future`` gives its offset once the broker has it."""

    future: Any = None

    def progress(self, processed: Callable[[Any], bool]) -> str:
        if self.future is None:
            return FAILED  # send() itself raised
        if not self.future.done():
            return PENDING
        if self.future.cancelled() or self.future.exception() is not None:
            return FAILED
        return PROCESSED if processed(self.future.result()) else PENDING


class DueCursor:
    """One partition's place in the timer index, and its wakes in flight.

    Every key below ``next_from`` has had a wake sent (or is gone): a tick seeks there
    rather than stepping again over the keys that fired before (RocksDB tombstones)."""

    def __init__(self) -> None:
        self.next_from = b""
        self.inflight: dict[bytes, InFlight] = {}  # in send order, so roughly in offset order
        self.retry: dict[bytes, float] = {}  # key -> monotonic time to send its wake again

    def lower(self, key: bytes) -> None:
        """A key was written: if it is below where the last tick stopped, go back for it."""
        if key < self.next_from:
            self.next_from = key

    def due(self, db: Any, limit: bytes, room: int) -> list[bytes]:
        """Keys due by ``limit`` that have no wake yet, at most ``room``; moves past them.

        Synchronous on purpose: a key the decide agent writes meanwhile cannot slip
        between this scan and the new ``next_from``."""
        found: list[bytes] = []
        it = db.iter()
        it.seek(self.next_from)
        while it.valid():
            key = it.key()
            if key > limit or not key[:1].isdigit():
                break
            if key not in self.inflight and key not in self.retry:
                if len(found) >= room:
                    self.next_from = key
                    return found
                found.append(key)
            it.next()
        self.next_from = max(self.next_from, limit)
        return found

    def settle(self, db: Any, processed: Callable[[Any], bool], now: float) -> list[bytes]:
        """Forget the wakes that were processed; return the keys whose wake must go again.

        Oldest first, stopping at the first wake still on its way, so a tick costs the
        wakes processed since the last one. A processed wake normally took its key along;
        a key still there means the wake was dropped (its processing failed): it goes again
        after :data:`RETRY_AFTER_S`. A wake the producer failed to send goes again at once."""
        finished: list[tuple[bytes, str]] = []
        for key, wake in self.inflight.items():
            progress = wake.progress(processed)
            if progress == PENDING:
                break
            finished.append((key, progress))
        for key, progress in finished:
            del self.inflight[key]
            if db.get(key) is not None:
                self.retry[key] = now + (RETRY_FAILED_SEND_S if progress == FAILED else RETRY_AFTER_S)
        ready = [key for key, at in self.retry.items() if at <= now]
        for key in ready:
            del self.retry[key]
        return [key for key in ready if db.get(key) is not None]


class TimerIndex(CountedTable):
    """The ``due`` table as the decide agent writes it: keeps the count of pending waits
    exact and moves a partition's :class:`DueCursor` back for a key written below it."""

    def __init__(self, table: Any, app: Any, *, wall_clock: bool) -> None:
        super().__init__(table, app)
        self.app = app
        self.wall_clock = wall_clock
        self.cursors: dict[int, DueCursor] = {}
        self.generation = rebalances(app)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        super().__setitem__(key, value)
        partition = current_partition()
        if partition is not None and rebalances(self.app) == self.generation:  # else all start again anyway
            cursor = self.cursors.get(partition)
            if cursor is not None:
                cursor.lower(key)

    def cursor(self, partition: int) -> DueCursor:
        """This partition's cursor; all start again after a rebalance, when recovery may have
        written keys anywhere and the wakes in flight may belong to another worker."""
        generation = rebalances(self.app)
        if generation != self.generation:
            self.cursors.clear()
            self.generation = generation
        return self.cursors.setdefault(partition, DueCursor())

    def fired(self, due_at: float) -> None:
        """Waits that fell due at ``due_at`` have just fired: how late, by the wall clock.

        In event-time mode nothing is observed: a wait fires as of its due time whatever the
        wall clock says, and the gap between the two only measures how fast history flows."""
        if self.wall_clock:
            metrics.TIMER_LATENESS.observe(max(0.0, time.time() - due_at))


async def _send_due_wakes(
    app: faust.App,
    due: TimerIndex,
    customer_events: Any,
    runtime: JourneyRuntime,
    settings: Settings,
    names: TopicNames,
) -> None:
    now = time.monotonic()
    generation = rebalances(app)
    wall = await _inbound_clock(app, runtime, names, now) if settings.clock == "wall" else None
    if not _unchanged(app, generation):
        return  # the group changed while Redis answered: that clock says nothing of the partitions held now
    dbs = active_dbs(app, due)
    for partition, db in dbs:
        cursor = due.cursor(partition)
        # the wall clock as the inbound partitions are read; event time: the watermark less the lateness
        clock = wall if wall is not None else runtime.watermarks.get(partition, 0.0) - settings.allowed_lateness_s
        limit = due_limit(clock)
        keys = cursor.settle(db, runtime.processed, now)
        keys += cursor.due(db, limit, MAX_IN_FLIGHT - len(cursor.inflight) - len(keys))
        wakes = [(key, InFlight()) for key in keys]
        cursor.inflight.update(wakes)  # before the first await: the next tick must not send them again
        for key, wake in wakes:
            if not _unchanged(app, generation):
                return  # what is left goes with the cursors; the partition's owner sends it by its own clock
            at, customer = parse_due_key(key)
            try:
                wake.future = await customer_events.send(key=customer, value=_wake_event(customer, at, clock))
            except Exception:  # sent again on a later tick
                log.exception("cannot send a wake for partition %d", partition)
    total = due.counts.advance(dbs)
    if total is not None:
        metrics.TIMERS_PENDING.set(total[KEYS])


def _unchanged(app: faust.App, generation: int) -> bool:
    """No rebalance began since ``generation`` was read, so a clock computed then still covers
    the partitions this worker holds. Reading Redis and sending each wake await: a rebalance
    may start meanwhile, and give this worker partitions whose backlog that clock never saw,
    or take its own away with their wakes half sent."""
    return rebalances(app) == generation and processing(app)


async def _inbound_clock(app: faust.App, runtime: JourneyRuntime, names: TopicNames, now: float) -> float:
    """The wall clock, held back while this worker's ingest, or another's, still reads events from before it."""
    inbound = runtime.inbound
    inbound.follow(rebalances(app))
    inbound_tps = [tp for tp in app.consumer.assignment() if names.is_events_topic(tp.topic)]
    ends = {(tp.topic, tp.partition): _end(app, tp) for tp in inbound_tps}
    committed = {(tp.topic, tp.partition): _committed(app, tp) for tp in inbound_tps}
    wall = time.time()
    clock = inbound.clock(wall, now, ends, committed)
    if runtime.group is not None:
        clock = await runtime.group.clock(clock, wall, rebalances(app))
    metrics.TIMER_HELD_BACK.set(wall - clock)
    return clock


def _end(app: faust.App, tp: Any) -> int | None:
    """The offset after the partition's last record, as of the consumer's last fetch; None if
    it has not fetched from it yet (or has just lost it)."""
    try:
        return app.consumer.highwater(tp)
    except Exception:  # aiokafka asserts the partition is assigned
        return None


def _committed(app: faust.App, tp: Any) -> int | None:
    """The group's committed offset of the partition, as Faust learnt it when the partition
    was assigned (and by its own commits since); None if unknown.

    Faust keeps it in a private mapping: its public ``position()`` is a coroutine and runs
    ahead of what was processed (it counts records fetched into its buffer)."""
    offsets = getattr(app.consumer, "_committed_offset", None)
    offset = offsets.get(tp) if offsets is not None else None
    return offset if isinstance(offset, int) else None


def _wake_event(customer: bytes, wake: float, clock: float) -> bytes:
    event = Event(
        event_id=f"wake:{wake:.3f}",
        type=WAKE,
        ts=wake,
        customer_key=customer.decode(),
        channel="",
        received_at=time.time(),
        properties={"clock": clock},
    )
    return msgpack.packb(event.to_wire(), use_bin_type=True)
