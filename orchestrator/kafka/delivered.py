"""Which commands are on an action topic already: read back after a crash, before sending again.

A worker killed between its table write and its producer's send leaves commands that
may or may not have left. The restarted worker owes them (:mod:`agents.outbox`) and asks
here which did: the action ids written to the topic since a given time, up to its end
as it is now. Only a crash leads here, so a plain group-less read is fast enough.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer, TopicPartition

from orchestrator.kafka.clients import consumer
from schemas.codec import DecodeError, content_type_of, decode_payload

log = logging.getLogger(__name__)
READ_FOR_S = 60.0  # a longer read gives up: sending again is safer than losing a command


class Unfinished(Exception):
    """The topic could not be read to its end in time."""


def action_ids_since(bootstrap: str, topic: str, since: float) -> set[str]:
    """Action ids of the records written to ``topic`` at or after ``since`` (epoch seconds, by
    the record's timestamp), up to the topic's end when asked; raises :class:`Unfinished`."""
    client = consumer(bootstrap)
    try:
        ends = _positioned(client, topic, since)
        return _read_to(client, ends, time.monotonic() + READ_FOR_S)
    finally:
        client.close()


def _positioned(client: KafkaConsumer, topic: str, since: float) -> dict[TopicPartition, int]:
    """Assign the topic's partitions that have records since ``since`` and seek to the first;
    ``{partition: end offset}`` of those."""
    parts = [TopicPartition(topic, p) for p in sorted(client.partitions_for_topic(topic) or ())]
    if not parts:
        return {}
    ends = client.end_offsets(parts)
    starts = client.offsets_for_times({tp: int(since * 1000) for tp in parts})
    todo = {tp: ends[tp] for tp in parts if starts.get(tp) is not None and starts[tp].offset < ends[tp]}
    client.assign(list(todo))
    for tp in todo:
        client.seek(tp, starts[tp].offset)
    return todo


def _read_to(client: KafkaConsumer, ends: dict[TopicPartition, int], deadline: float) -> set[str]:
    ids: set[str] = set()
    todo = dict(ends)
    while todo:
        if time.monotonic() > deadline:
            raise Unfinished(f"{len(todo)} partition(s) not read to their end in {READ_FOR_S:.0f} s")
        for tp, records in client.poll(timeout_ms=500).items():
            ids.update(_action_id(r.value, r.headers) for r in records if r.offset < todo.get(tp, 0))
        todo = {tp: end for tp, end in todo.items() if client.position(tp) < end}
    ids.discard("")
    return ids


def _action_id(value: bytes | None, headers: object) -> str:
    try:
        command = decode_payload(value or b"", content_type_of(headers))
    except DecodeError:
        return ""  # not ours: nothing it could stand for
    return str(command.get("action_id", "")) if isinstance(command, dict) else ""
