"""Decide agent: customer-keyed events -> state table -> commands and read model.

One event at a time on purpose: Faust tables pick the changelog partition from
the *current* event, so writing a batch of customers after ``stream.take``
would file their changes under the wrong partition. Batching happens where it
is safe, in the Redis writers.

Each key of the table is a profile, a pointer to the profile an identifier
belongs to, or a suppression marker; :func:`orchestrator.identity.graph.handle`
says what an event does there, and this agent carries it out.

In event-time mode (``ORCH_CLOCK=event``) a customer's waits that fell due by the
time of the record in hand fire first, each due time in a decision of its own and at
its own time (:func:`apply_in_event_time`), exactly as offline replay fires them.
Whether the timer's wake or the customer's next event reaches the partition first
is a race, and it must not change what is sent: an opt-out, a purchase or a long
gap that arrives with an overdue wait would otherwise judge that wait as of the
later event (consent held back, ``expired``, several waits under one frequency cap).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import faust
import msgpack

from agents import commit_hold, outbox, stream_drops
from agents.erasure import Deliveries, HeldWrites, settle
from agents.handover import Doubt, Handover
from agents.journeys import JourneyRuntime, due_key
from agents.outbound import Outbound
from agents.web import CountedTable
from orchestrator import metrics
from orchestrator.audit import decision_record
from orchestrator.batching import all_written
from orchestrator.core.commands import Command
from orchestrator.core.decide import WAKE, Decision
from orchestrator.core.event import Event
from orchestrator.decisionlog import DecisionLogWriter
from orchestrator.identity import records
from orchestrator.identity.graph import ERASE, Context, Effects, handle
from orchestrator.ingest import Rejection
from orchestrator.kafka.delivered import action_ids_since
from orchestrator.readmodel import ReadModelWriter
from orchestrator.settings import Settings
from orchestrator.topics import TopicNames

log = logging.getLogger(__name__)
QUIET_OUTCOMES = frozenset({"decided", "duplicate"})  # counted by their own metrics
MAX_CATCH_UP = 10_000  # waits fired before one record; a journey looping through short waits, not a history


def attach_decide(
    app: faust.App, settings: Settings, customer_events: Any, outbound: Outbound, runtime: JourneyRuntime, due: Any
) -> Any:
    # key_type/value_type=bytes is what makes Faust use the raw codec for a table.
    table = CountedTable(  # counts profiles exactly for orchestrator_customers
        app.Table("customers", partitions=settings.partitions, key_type=bytes, value_type=bytes, default=None),
        app,
        counts=records.is_profile,  # not a pointer or a suppression
        tallies=[records.journey_places],  # orchestrator_journey_customers
    )
    ctx = Context(settings.policy(), runtime.engine, hasher=settings.hasher())
    readmodel = ReadModelWriter(
        settings.redis_url,
        settings.topic_prefix,
        settings.readmodel_flush_interval_s,
        settings.readmodel_batch_max,
        policy=settings.policy(),
    )
    decisions = DecisionLogWriter(settings.redis_url, settings.topic_prefix, settings.decisions_kept)
    written = all_written(readmodel, decisions)  # an offset commit and an erasure wait for it
    commit_hold.install(app, written)
    actions = TopicNames(settings.topic_prefix).actions
    writers = Writers(
        readmodel,
        decisions,
        outbox.Delivered(lambda channel, since: action_ids_since(settings.kafka_bootstrap, actions(channel), since)),
    )
    event_time = settings.clock == "event"
    handover = Handover(customer_events.get_topic_name())

    @app.on_partitions_assigned.connect
    def took_over(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:  # args: (assigned partitions,)
        [assigned] = args
        handover.assigned(assigned, time.time())

    @app.task
    async def write_read_model() -> None:
        await readmodel.run()

    @app.task
    async def write_decision_log() -> None:
        await decisions.run()

    @app.agent(customer_events, name="decide")
    async def decide_events(stream: faust.StreamT) -> None:
        # Not one record before the published journeys are read: a customer whose version
        # is not known yet would be taken out of the journey as if it had been removed.
        await runtime.catalogue_ready.wait()
        async for record in stream.events():
            message = record.message
            if stream_drops.skip(app.consumer, message):
                continue  # it comes again after the record the stream dropped before it
            steps: list[Step] = []
            in_doubt = handover.in_doubt((message.topic, message.partition), message.timestamp or time.time())
            held = HeldWrites(table)  # an erasure's writes: see agents.erasure, the profile goes last
            failure: Exception | None = None
            try:
                event = Event.from_wire(msgpack.unpackb(record.value, raw=False))
                if event_time and event.type != WAKE:
                    runtime.observe(record.message.partition, event.ts)
                now = _now(event, event_time)
                where = outbox.place(record.message.partition, record.message.offset)
                writes = held if event.type == ERASE else table
                if event_time:
                    apply_in_event_time(writes, due, record.key, event, now, ctx, steps, where)
                else:
                    steps.append(decide_step(writes, due, record.key, event, now, ctx, where))
            except Exception as exc:  # one poisonous record must not stop the partition
                log.exception("cannot process %s", record.message.tp)
                failure = exc
            deliveries: Deliveries = []
            for step in steps:  # after a failure too: waits that fired before it are written
                deliveries += await _carry_out(step, message.offset, customer_events, outbound, writers, in_doubt)
            if failure is not None:
                await outbound.dead_letter(record.message, Rejection("processing_error", repr(failure)))
            if held.held:
                erasure = _erasure_sender(steps, message.offset, customer_events, outbound, writers)
                if await settle(deliveries, erasure, written, lambda: app.should_stop):
                    held.commit()
                else:  # stopping: the profile stays, and the erasure is read again after the restart
                    commit_hold.commit_no_more(app)
                    log.warning("the worker stops while an erasure waits; it is read again after the restart")
            runtime.done(record.message.topic, record.message.partition, record.message.offset)

    return table


@dataclass(frozen=True)
class Step:
    """One decision to carry out: the record in hand, or a wait that fired before it; and
    what the record sent the first time, when it is read again after a crash."""

    event: Event
    now: float
    effects: Effects
    owed: tuple[records.Sent, ...] = ()


@dataclass(frozen=True)
class Writers:
    """The batched Redis writers: profiles (with next best actions) and recent decisions; and
    the read-back of the action topics that keeps a restart from sending a command twice."""

    readmodel: ReadModelWriter
    decisions: DecisionLogWriter
    delivered: outbox.Delivered


async def _carry_out(
    step: Step, offset: int, customer_events: Any, outbound: Outbound, writers: Writers, in_doubt: Doubt | None = None
) -> Deliveries:
    """Everything after the table write: follow-up events, commands, audit records, read model.
    ``offset``: the record's, which orders the read model's writes across workers.
    ``in_doubt``: the record may have been decided by a worker before a hand-over, which sent
    its commands; those found on their topics are not sent again (see :mod:`agents.handover`).
    Returns the deliveries of the follow-ups and the audit record, which an erasure awaits."""
    effects, event, now = step.effects, step.event, step.now
    await _send_again(step.owed, event, customer_events, outbound, writers.delivered)
    deliveries = [await _follow_up(follow_up.to_wire(), customer_events) for follow_up in effects.sends]
    decision = effects.decision
    if decision is not None and not decision.duplicate:
        for command in await not_sent_before(decision.commands, in_doubt, writers.delivered):
            await outbound.command(command, event.received_at)
        if _worth_recording(event, decision):
            record = decision_record(event, decision, now)
            await outbound.decision(record)
            writers.decisions.stage(decision.state.key, record)
    if effects.audit is not None:
        deliveries.append(await outbound.audit(effects.audit))
    if effects.forget:
        writers.readmodel.forget(effects.forget, effects.forget_tokens, offset)
        if effects.moved_to is not None:  # merged away: the history moves along
            writers.decisions.move(effects.forget[0], effects.moved_to)
        else:
            writers.decisions.forget(effects.forget)
    if isinstance(effects.record, records.Profile):
        writers.readmodel.stage(effects.record.state, time.time(), offset)
    elif effects.restage is not None:
        writers.readmodel.stage(effects.restage, time.time(), offset)
    return deliveries


def _erasure_sender(
    steps: list[Step], offset: int, customer_events: Any, outbound: Outbound, writers: Writers
) -> Callable[[], Awaitable[Deliveries]]:
    """What sends an erasure's messages again (and stages its Redis deletes again)."""
    erasures = [step for step in steps if step.event.type == ERASE]

    async def send_again() -> Deliveries:
        deliveries: Deliveries = []
        for step in erasures:
            deliveries += await _carry_out(replace(step, owed=()), offset, customer_events, outbound, writers)
        return deliveries

    return send_again


async def _send_again(
    owed: tuple[records.Sent, ...], event: Event, customer_events: Any, outbound: Outbound, delivered: outbox.Delivered
) -> None:
    """A redelivered record's first sends, again, where they may have died in the producer:
    follow-up events all (they are idempotent), commands unless they are on their topic."""
    if not owed:
        return
    for sent in owed:
        for wire in sent.sends:
            await _follow_up(wire, customer_events)
    for command in await delivered.unsent(owed):
        await outbound.command(command, event.received_at)
        metrics.COMMANDS_RESENT.labels(command.channel, command.action).inc()


async def _follow_up(wire: dict[str, Any], customer_events: Any) -> Any:
    value = msgpack.packb(wire, use_bin_type=True)
    return await customer_events.send(key=wire["customer_key"].encode(), value=value)


async def not_sent_before(
    commands: list[Command], in_doubt: Doubt | None, delivered: outbox.Delivered
) -> list[Command]:
    """``commands`` but those the worker before a hand-over sent, if their record is in doubt."""
    if in_doubt is None or not commands:
        return commands
    unsent = await delivered.not_on_topics(commands, *in_doubt)
    for command in commands:
        if command not in unsent:
            metrics.COMMANDS_SENT_BEFORE.labels(command.channel, command.action).inc()
    return unsent


def _worth_recording(event: Event, decision: Decision) -> bool:
    """Every event's decision is recorded; a timer's wake only when it did something."""
    return event.type != WAKE or bool(decision.commands or decision.held or decision.outcomes)


def _now(event: Event, event_time: bool) -> float:
    """Wall clock when live; in event-time mode the event's own time (a wake: the timer's clock)."""
    if not event_time:
        return time.time()
    if event.type == WAKE:
        return float(event.properties.get("clock", event.ts))
    return event.ts


def apply_in_event_time(
    table: Any,
    due: Any,
    key: bytes,
    event: Event,
    now: float,
    ctx: Context,
    steps: list[Step],
    where: str | None = None,
) -> None:
    """Event time: fire the key's waits due by ``now`` one due time at a time, then the event.

    Each wait is decided alone at its own due time, as :class:`orchestrator.replay.Replay`
    decides it, so the result does not depend on whether the timer's wake or the customer's
    next event came first: the event's decision never holds an earlier wait's command back
    for consent given after it was due, never measures its expiry against the event's later
    time, and never ranks waits due at different times against one frequency cap. A wake
    (``now`` is the timer's clock) is caught up the same way and then finds nothing due.
    Steps are appended to ``steps`` as they are written, so a failure part-way leaves the
    ones already done for the caller to carry out.
    """
    read = _read(table, key)
    fired_at = None
    for _ in range(MAX_CATCH_UP):
        record = read[1]
        wake = record.state.next_wake() if isinstance(record, records.Profile) else None
        if wake is None or wake > now or wake == fired_at:  # nothing (more) due, or it would not move
            break
        fired, fired_at = _wake_at(key, wake, event.received_at), wake
        steps.append(decide_step(table, due, key, fired, wake, ctx, where, read))
        read = _read(table, key)
    steps.append(decide_step(table, due, key, event, now, ctx, where, read))


def _wake_at(key: bytes, wake: float, received_at: float) -> Event:
    """The wake a timer would send for ``key`` at ``wake``, decided at that very time."""
    return Event(
        event_id=f"wake:{wake:.3f}", type=WAKE, ts=wake, customer_key=key.decode(), channel="", received_at=received_at
    )


def _read(table: Any, key: bytes) -> tuple[bytes | None, records.Record]:
    """The key's bytes and record; where nothing is stored, what an erasure left, if any."""
    raw = table.get(key)
    if raw is None:
        return None, records.decode(table.get(records.erased_key_bytes(key)))
    return raw, records.decode(raw)


def decide_step(
    table: Any,
    due: Any,
    key: bytes,
    event: Event,
    now: float,
    ctx: Context,
    where: str | None = None,
    read: tuple[bytes | None, records.Record] | None = None,
) -> Step:
    """Read the key's record (unless ``read`` holds it), handle the event, write the record and
    the timer index. ``where`` is the record's place in the log: the record keeps its outbox
    (see :mod:`agents.outbox`), and if it is read again the step owes what it sent the first
    time; None (replay, tests) keeps none."""
    raw, record = read if read is not None else _read(table, key)
    pending = record.state.next_wake() if isinstance(record, records.Profile) else None
    old_wake = new_wake = pending
    if event.type == WAKE:  # the key that sent this wake goes; a wait still pending keeps one
        old_wake, new_wake = event.ts, pending  # (a wake sent by a clock behind its wait: another host's)
    effects = handle(key.decode(), record, event, now, ctx)
    if where is not None:
        outbox.keep(record, effects, where, time.time())
    if effects.decision is not None and not effects.decision.duplicate:
        for due_at in effects.decision.fired:  # by a wake or before an event: one lateness each
            due.fired(due_at)
    if effects.record is not None:
        _write(table, key, raw, effects.record)
        new_wake = effects.record.state.next_wake() if isinstance(effects.record, records.Profile) else None
    if effects.erased_at is not None:
        table[records.erased_key_bytes(key)] = records.erased_mark(effects.erased_at)
    _move_due(due, key, old_wake, new_wake)
    _count(effects, event)
    owed = outbox.owed(record, effects, where, time.time()) if where is not None else ()
    return Step(event, now, effects, owed)


def _write(table: Any, key: bytes, raw: bytes | None, record: records.Record) -> None:
    value = records.encode(record)
    if value is not None:
        table[key] = value
    elif raw is not None:
        del table[key]  # a changelog tombstone, so compaction forgets the customer too


def _count(effects: Effects, event: Event) -> None:
    if effects.counted == "duplicate" and event.type != WAKE:
        metrics.EVENTS_DUPLICATE.inc()
    elif effects.counted and effects.counted not in QUIET_OUTCOMES:
        metrics.IDENTITY_EVENTS.labels(effects.counted).inc()
    if effects.audit is not None:
        metrics.ERASURES.inc()
    metrics.count_outcomes(effects.left)
    decision = effects.decision
    if decision is None or decision.duplicate:
        return
    for held in decision.held:
        metrics.COMMANDS_SUPPRESSED.labels(held.command.channel, held.command.action, held.reason).inc()
    metrics.count_outcomes(decision.outcomes)


def _move_due(due: Any, key: bytes, old: float | None, new: float | None) -> None:
    """Move the key's timer index entry from ``old`` to ``new``; by key, as two times within a
    millisecond share one (a wake's time is its key's, the state's the exact one)."""
    old_key = due_key(old, key) if old is not None else None
    new_key = due_key(new, key) if new is not None else None
    if old_key == new_key:
        return
    if old_key is not None and due.get(old_key) is not None:
        del due[old_key]
    if new_key is not None and due.get(new_key) is None:
        due[new_key] = b"1"
