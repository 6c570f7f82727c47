"""Decide agent: customer-keyed events -> state table -> commands and read model.

One event at a time on purpose: Faust tables pick the changelog partition from
the *current* event, so writing a batch of customers after ``stream.take``
would file their changes under the wrong partition. Batching happens where it
is safe, in the Redis read-model writer.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import msgpack

from agents.journeys import JourneyRuntime, due_key
from agents.outbound import Outbound
from orchestrator import metrics
from orchestrator.core.decide import WAKE, Decision, decide
from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.core.state import CustomerState
from orchestrator.ingest import Rejection
from orchestrator.readmodel import ReadModelWriter
from orchestrator.settings import Settings

log = logging.getLogger(__name__)


def attach_decide(
    app: faust.App, settings: Settings, customer_events: Any, outbound: Outbound, runtime: JourneyRuntime, due: Any
) -> Any:
    # key_type/value_type=bytes is what makes Faust use the raw codec for a table.
    table = app.Table("customers", partitions=settings.partitions, key_type=bytes, value_type=bytes, default=None)
    policy = settings.policy()
    readmodel = ReadModelWriter(
        settings.redis_url,
        settings.topic_prefix,
        settings.readmodel_flush_interval_s,
        settings.readmodel_batch_max,
    )
    event_time = settings.clock == "event"

    @app.task
    async def write_read_model() -> None:
        await readmodel.run()

    @app.agent(customer_events, name="decide")
    async def decide_events(stream: faust.StreamT) -> None:
        async for record in stream.events():
            try:
                event = Event.from_wire(msgpack.unpackb(record.value, raw=False))
                now = _now(event, record.message.partition, runtime, event_time)
                decision = apply(table, due, record.key, event, now, policy, runtime)
            except Exception as exc:  # one poisonous record must not stop the partition
                log.exception("cannot process %s", record.message.tp)
                await outbound.dead_letter(record.message, Rejection("processing_error", repr(exc)))
                continue
            if decision is None:
                continue
            for command in decision.commands:
                await outbound.command(command, event.received_at)
            readmodel.stage(decision.state, time.time())

    return table


def _now(event: Event, partition: int, runtime: JourneyRuntime, event_time: bool) -> float:
    """Wall clock when live; in event-time mode the event's own time (a wake: the timer's clock)."""
    if not event_time:
        return time.time()
    if event.type == WAKE:
        return float(event.properties.get("clock", event.ts))
    mark = runtime.watermarks.get(partition, 0.0)
    runtime.watermarks[partition] = max(mark, event.ts)
    return event.ts


def apply(
    table: Any, due: Any, key: bytes, event: Event, now: float, policy: Policy, runtime: JourneyRuntime
) -> Decision | None:
    """Read, decide, write state and the timer index. None when nothing changed."""
    raw = table.get(key)
    state = CustomerState.from_bytes(raw) if raw else None
    old_wake = state.next_wake() if state else None
    if event.type == WAKE:
        metrics.TIMER_LATENESS.observe(max(0.0, time.time() - event.ts))
        old_wake = event.ts  # the key that sent this wake goes, even if it was stale
    decision = decide(state, event, now, policy, runtime.engine)
    if decision.duplicate:
        if event.type == WAKE:
            _move_due(due, key, old_wake, None)
        else:
            metrics.EVENTS_DUPLICATE.inc()
        return None
    table[key] = decision.state.to_bytes()
    _move_due(due, key, old_wake, decision.state.next_wake())
    for held in decision.held:
        metrics.COMMANDS_SUPPRESSED.labels(held.command.channel, held.command.action, held.reason).inc()
    metrics.count_outcomes(decision.outcomes)
    return decision


def _move_due(due: Any, key: bytes, old: float | None, new: float | None) -> None:
    if old == new:
        return
    if old is not None and due.get(due_key(old, key)) is not None:
        del due[due_key(old, key)]
    if new is not None:
        due[due_key(new, key)] = b"1"
