"""Ingest agent: ``events.<channel>`` (by pattern) -> validated, repartitioned by customer."""

from __future__ import annotations

import time
from typing import Any

import faust
import msgpack

from agents import stream_drops
from agents.discovery import inbound_topic
from agents.inbound_clock import InboundProgress
from agents.outbound import Outbound
from orchestrator import metrics
from orchestrator.ingest import Rejection, ingest
from orchestrator.settings import Settings
from orchestrator.topics import TopicNames


def attach_ingest(
    app: faust.App,
    settings: Settings,
    names: TopicNames,
    customer_events: Any,
    outbound: Outbound,
    progress: InboundProgress,
) -> None:
    inbound = inbound_topic(app, settings, names)
    limits = settings.limits()
    hasher = settings.hasher()

    @app.agent(inbound, name="ingest")
    async def ingest_events(stream: faust.StreamT) -> None:
        async for record in stream.events():
            message = record.message
            if stream_drops.skip(app.consumer, message):
                continue  # it comes again after the record the stream dropped before it
            result = ingest(
                message.value,
                topic=message.topic,
                headers=message.headers,
                received_at=message.timestamp or time.time(),
                now=time.time(),
                topics=names,
                limits=limits,
                hasher=hasher,
            )
            if isinstance(result, Rejection):
                await outbound.dead_letter(message, result)
            else:
                metrics.EVENTS_CONSUMED.labels(result.channel, metrics.type_label(result.type)).inc()
                await customer_events.send(
                    key=result.customer_key.encode(), value=msgpack.packb(result.to_wire(), use_bin_type=True)
                )
            # Sent (to the producer, in order): a wake sent after this goes behind the event.
            progress.record(
                (message.topic, message.partition), message.offset, message.timestamp or time.time(), time.monotonic()
            )
