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

from agents.outbound import Outbound
from orchestrator import metrics
from orchestrator.core.decide import Decision, decide
from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.core.state import CustomerState
from orchestrator.ingest import Rejection
from orchestrator.readmodel import ReadModelWriter
from orchestrator.settings import Settings

log = logging.getLogger(__name__)


def attach_decide(app: faust.App, settings: Settings, customer_events: Any, outbound: Outbound) -> Any:
    # key_type/value_type=bytes is what makes Faust use the raw codec for a table.
    table = app.Table("customers", partitions=settings.partitions, key_type=bytes, value_type=bytes, default=None)
    policy = settings.policy()
    readmodel = ReadModelWriter(
        settings.redis_url,
        settings.topic_prefix,
        settings.readmodel_flush_interval_s,
        settings.readmodel_batch_max,
    )

    @app.task
    async def write_read_model() -> None:
        await readmodel.run()

    @app.agent(customer_events, name="decide")
    async def decide_events(stream: faust.StreamT) -> None:
        async for record in stream.events():
            try:
                event = Event.from_wire(msgpack.unpackb(record.value, raw=False))
                decision = apply(table, record.key, event, policy)
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


def apply(table: Any, key: bytes, event: Event, policy: Policy) -> Decision | None:
    """Read, decide, write. None for a duplicate, which changes nothing."""
    raw = table.get(key)
    state = CustomerState.from_bytes(raw) if raw else None
    decision = decide(state, event, time.time(), policy)
    if decision.duplicate:
        metrics.EVENTS_DUPLICATE.inc()
        return None
    table[key] = decision.state.to_bytes()
    for held in decision.held:
        metrics.COMMANDS_SUPPRESSED.labels(held.command.channel, held.command.action, held.reason).inc()
    return decision
