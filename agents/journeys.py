"""Journeys in the stream: the published catalogue, and durable timers for waits.

**Catalogue.** Every worker reads the whole compacted ``orchestrator.journeys``
topic with its own group-less consumer (a Faust agent would share its
partitions between workers, and Faust's GlobalTable has known recovery bugs),
so a new version is live on every worker within a second, without a restart.

**Timers.** A customer's waits live in their state; a second table, ``due``,
indexes them by time: one key ``"<wake, zero-padded>|<customer>"`` per customer
with a pending wait, written and deleted by the decide agent in the customer's
own partition, so it is changelog-backed and moves with the customer on a
rebalance. RocksDB keeps keys sorted, so the timer reads the index from the
start and stops at the first key not yet due: a tick costs what is due, never a
scan of all customers. Faust timers run on every worker and cannot write
tables, so the timer only *sends* a wake to the customer's partition of the
customer-events topic; the decide agent fires the wait and moves the index.
A wake sent twice is harmless: the second finds nothing due.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust
import msgpack
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.web import estimate_keys
from orchestrator import metrics
from orchestrator.core.decide import WAKE
from orchestrator.core.event import Event
from orchestrator.errors import CliError
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import InvalidJourney, compile_text, load_dir
from orchestrator.kafka.clients import COMPACTED, ensure_topics
from orchestrator.settings import Settings
from orchestrator.topics import TopicNames

log = logging.getLogger(__name__)
RESEND_AFTER_S = 10.0


def due_key(wake: float, customer: bytes) -> bytes:
    return f"{wake:017.3f}|".encode() + customer


def parse_due_key(key: bytes) -> tuple[float, bytes]:
    wake, _, customer = key.partition(b"|")
    return float(wake), customer


@dataclass
class JourneyRuntime:
    engine: Engine
    catalogue_ready: asyncio.Event = field(default_factory=asyncio.Event)
    watermarks: dict[int, float] = field(default_factory=dict)  # event-time mode, per partition


def attach_journeys(app: faust.App, settings: Settings, names: TopicNames, customer_events: Any) -> Any:
    """Wire the catalogue feed and the timer; return (runtime, due table)."""
    engine = Engine(Catalogue(), settings.max_active_journeys, settings.default_timezone)
    for journey in _files(settings):
        engine.catalogue.add(journey)
    runtime = JourneyRuntime(engine)
    ensure_topics(settings.kafka_bootstrap, [names.journeys], 1, COMPACTED, settings.replication_factor)
    due = app.Table("due", partitions=settings.partitions, key_type=bytes, value_type=bytes, default=None)

    @app.task
    async def follow_catalogue() -> None:
        await _follow_catalogue(settings.kafka_bootstrap, names.journeys, runtime)

    sent: dict[bytes, float] = {}

    @app.timer(interval=settings.timer_interval_s)
    async def send_wakes() -> None:
        if app.rebalancing:
            return
        await _send_due_wakes(app, due, customer_events, runtime, settings, sent)

    return runtime, due


def _files(settings: Settings) -> list[Any]:
    if settings.journeys_dir is None:
        return []
    journeys, errors = load_dir(settings.journeys_dir)
    if errors:
        raise CliError("journeys in " + str(settings.journeys_dir) + " are invalid:\n" + "\n".join(map(str, errors)))
    return journeys


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
            metrics.JOURNEYS_LOADED.set(sum(len(v) for v in runtime.engine.catalogue.versions.values()))
    finally:
        await consumer.stop()


def _apply_published(catalogue: Catalogue, key: bytes | None, value: bytes | None) -> None:
    name = (key or b"?").decode(errors="replace")
    if value is None:
        journey_id = name.split(":")[0]
        catalogue.retire(journey_id)
        log.info("journey %s retired", journey_id)
        return
    try:
        journey = compile_text(value.decode(), f"published {name}")
    except (InvalidJourney, UnicodeDecodeError) as exc:
        log.error("ignoring published journey %s: %s", name, exc)
        return
    catalogue.add(journey)
    log.info("journey %s version %d is live", journey.id, journey.version)


async def _send_due_wakes(
    app: faust.App, due: Any, customer_events: Any, runtime: JourneyRuntime, settings: Settings, sent: dict
) -> None:
    now_wall = time.monotonic()
    for stale in [k for k, t in sent.items() if now_wall - t > 6 * RESEND_AFTER_S]:
        del sent[stale]
    for partition, db in _active_dbs(app, due):
        clock = _clock(settings, runtime, partition)
        limit = f"{clock:017.3f}|".encode() + b"\xff"
        for key in db.keys():  # noqa: SIM118 - RocksDB iterator, sorted by due time
            if key > limit or not key[:1].isdigit():
                break
            if now_wall - sent.get(key, -1e9) < RESEND_AFTER_S:
                continue
            wake, customer = parse_due_key(key)
            sent[key] = now_wall
            await customer_events.send(key=customer, value=_wake_event(customer, wake, clock))
    metrics.TIMERS_PENDING.set(estimate_keys(due))


def _clock(settings: Settings, runtime: JourneyRuntime, partition: int) -> float:
    if settings.clock == "event":
        return runtime.watermarks.get(partition, 0.0) - settings.allowed_lateness_s
    return time.time()


def _active_dbs(app: faust.App, table: Any) -> list[tuple[int, Any]]:
    from faust.types import TP

    store = table.data
    actives = app.assignor.assigned_actives()
    topic = table.changelog_topic.get_topic_name()
    return [(p, db) for p, db in list(getattr(store, "_dbs", {}).items()) if TP(topic, p) in actives]


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
