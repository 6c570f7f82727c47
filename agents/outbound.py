"""Everything the agents produce: commands, dead letters, repartitioned events."""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import faust

from orchestrator import metrics
from orchestrator.core.commands import Command
from orchestrator.ingest import Rejection
from orchestrator.kafka.clients import LEADER_WAIT_S, ensure_topics
from orchestrator.settings import Settings
from orchestrator.topics import TopicNames
from schemas.codec import content_type_header, encode_payload

DLQ_OVERHEAD = 4096  # the record's framing and batch header, with room to spare
KEPT_KEY_BYTES = 1024  # of a key too long to keep whole in a dead letter


def dead_letter_body(
    key: bytes | None, value: bytes, own: list[tuple[str, bytes]], where: list[tuple[str, bytes]], budget: int
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The dead letter's value and headers, within the producer's ``budget`` (its largest request).

    The broker takes records up to about 1 MiB, the producer sends up to ``budget``: a record
    refused close to the broker's limit, its copy a little larger with the ``dlq.*`` headers,
    failed to send, crashed the agent and was lost. Such a copy keeps the start of the value
    (``dlq.truncated``, with ``dlq.size`` the whole size; the whole record is still on its
    topic at ``dlq.offset``) and drops the record's own headers if they alone take a quarter."""
    room = budget - DLQ_OVERHEAD - len(key or b"") - _size(where)
    if _size(own) > room // 4:
        own, where = [], [*where, ("dlq.headers_dropped", str(len(own)).encode())]
        room -= 64
    room -= _size(own)
    if len(value) <= room:
        return value, [*own, *where]
    cut = [("dlq.truncated", b"true"), ("dlq.size", str(len(value)).encode())]
    return value[: max(0, room - 64)], [*own, *where, *cut]


def dead_letter_key(key: bytes | None, budget: int) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The dead letter's key, and the headers that say it was cut. The dead-letter topic has one
    partition, so the key only names the record; one of a quarter of the ``budget`` or more
    would leave the letter no room (a key near 1 MiB could not be sent at all), so its start
    is kept (``dlq.key_truncated``, with ``dlq.key_size`` the whole size)."""
    if key is None or len(key) < budget // 4:
        return key, []
    return key[:KEPT_KEY_BYTES], [("dlq.key_truncated", b"true"), ("dlq.key_size", str(len(key)).encode())]


def _size(headers: list[tuple[str, bytes]]) -> int:
    return sum(len(name.encode()) + len(value or b"") + 8 for name, value in headers)


class Outbound:
    """What the worker writes to. The topics are created at start (:meth:`create_topics`);
    a channel that is not configured gets its action topic on first use, so a new channel
    needs no deploy step."""

    def __init__(self, app: faust.App, names: TopicNames, encoding: str, retention_s: float | None = None) -> None:
        self._app = app
        self._retention_s = retention_s
        self._names = names
        self._encoding = encoding
        self._headers = content_type_header(encoding)
        self._actions: dict[str, Any] = {}
        self._declared: set[str] = set()
        self.dlq = app.topic(names.dlq, partitions=1, **self._log_topic())
        self.decisions = app.topic(names.decisions, **self._log_topic())
        self.audit_log = app.topic(names.audit, key_serializer="raw", value_serializer="raw", partitions=1)

    def create_topics(self, settings: Settings) -> None:
        """Create the dead-letter, decision and audit topics and the actions of every
        configured channel before the worker starts, and wait for their leaders.

        Created lazily, on the first record, a topic's first send raced its creation: the
        broker answered NotLeaderForPartition, and twice (the demo, the bad-input test) the
        worker's producer then hung for good."""
        names, replication = self._names, settings.replication_factor
        retention = {"retention.ms": str(int(self._retention_s * 1000))} if self._retention_s else None
        actions = [names.actions(c) for c in sorted(settings.channels)]
        create = functools.partial(
            ensure_topics, settings.kafka_bootstrap, replication=replication, wait_s=LEADER_WAIT_S
        )
        create([names.dlq], 1, retention)
        create([names.audit], 1)
        create([names.decisions, *actions], settings.partitions, retention)
        self._declared |= {names.dlq, names.audit, names.decisions, *actions}  # Faust need not declare them again

    async def command(self, command: Command, received_at: float) -> None:
        topic = await self._action_topic(command.channel)
        value = encode_payload(command.to_wire(), self._encoding)
        await topic.send(key=command.customer_id.encode(), value=value, headers=list(self._headers))
        metrics.COMMANDS_EMITTED.labels(command.channel, command.action).inc()
        metrics.EVENT_TO_COMMAND.observe(max(0.0, time.time() - received_at))

    async def dead_letter(self, message: Any, rejection: Rejection) -> None:
        """Keep the original bytes; say where they came from and why they were refused."""
        where = [
            ("dlq.reason", rejection.reason.encode()),
            ("dlq.detail", rejection.detail[:1000].encode("utf-8", "replace")),
            ("dlq.topic", message.topic.encode()),
            ("dlq.partition", str(message.partition).encode()),
            ("dlq.offset", str(message.offset).encode()),
        ]
        budget = self._app.conf.producer_max_request_size
        key, key_cut = dead_letter_key(message.key, budget)
        own = list(message.headers or [])
        value, headers = dead_letter_body(key, message.value or b"", own, where + key_cut, budget)
        await self._declare(self.dlq)
        await self.dlq.send(key=key, value=value, headers=headers)
        metrics.EVENTS_REJECTED.labels(rejection.reason).inc()

    async def decision(self, record: dict[str, Any]) -> None:
        """The decision audit stream, in the output encoding, keyed by customer."""
        value = encode_payload(record, self._encoding)
        await self._declare(self.decisions)
        await self.decisions.send(
            key=str(record.get("customer_key", "")).encode(), value=value, headers=list(self._headers)
        )

    async def audit(self, record: dict[str, Any]) -> Any:
        """Erasure records, JSON so auditors can read them with any tool; returns the delivery."""
        value = json.dumps(record, sort_keys=True).encode()
        await self._declare(self.audit_log)
        return await self.audit_log.send(key=str(record.get("customer", "")).encode(), value=value)

    async def _declare(self, topic: Any) -> None:
        """Create the topic with our settings before its first record: left to the
        broker's auto-creation it would get the broker's partitions and retention."""
        name = topic.get_topic_name()
        if name not in self._declared:
            await topic.maybe_declare()
            self._declared.add(name)

    def _log_topic(self) -> dict[str, Any]:
        """Raw bytes, and the product's retention: these topics hold customer data, so
        their retention bounds how long an erased customer's records survive."""
        return {"key_serializer": "raw", "value_serializer": "raw", "retention": self._retention_s}

    async def _action_topic(self, channel: str) -> Any:
        topic = self._actions.get(channel)
        if topic is None:
            topic = self._app.topic(self._names.actions(channel), **self._log_topic())
            await self._declare(topic)
            self._actions[channel] = topic
        return topic
