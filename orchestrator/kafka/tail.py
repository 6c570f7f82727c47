"""Follow action topics without a consumer group, picking up new topics as they appear."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition

from orchestrator.kafka.clients import consumer

RESCAN_S = 3.0


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: float
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def follow(bootstrap: str, pattern: str, *, from_beginning: bool, deadline: float | None = None) -> Iterator[Record]:
    """Yield records from every topic matching ``pattern`` until ``deadline`` (monotonic).

    Topics that appear after we start are read from their beginning, so a
    command that creates its channel's topic is not missed.
    """
    matcher = re.compile(pattern)
    client = consumer(bootstrap, auto_offset_reset="earliest" if from_beginning else "latest")
    assigned: set[TopicPartition] = set()
    next_scan = 0.0
    first_scan = True
    try:
        while deadline is None or time.monotonic() < deadline:
            if time.monotonic() >= next_scan:
                _assign_new(client, matcher, assigned, start_at_end=first_scan and not from_beginning)
                first_scan, next_scan = False, time.monotonic() + RESCAN_S
            if not assigned:
                time.sleep(0.2)
                continue
            batches = client.poll(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    yield Record(
                        r.topic, r.partition, r.offset, r.timestamp / 1000.0, r.key, r.value, list(r.headers or [])
                    )
    finally:
        client.close()


def _assign_new(client: Any, matcher: re.Pattern[str], assigned: set[TopicPartition], start_at_end: bool) -> None:
    found = {
        TopicPartition(topic, p)
        for topic in client.topics()
        if matcher.search(topic)
        for p in (client.partitions_for_topic(topic) or ())
    }
    added = found - assigned
    if not added:
        return
    # assign() replaces the assignment and forgets positions: keep the old ones.
    positions = {tp: client.position(tp) for tp in assigned}
    assigned |= added
    client.assign(list(assigned))
    for tp, offset in positions.items():
        client.seek(tp, offset)
    if start_at_end:
        client.seek_to_end(*added)
    else:
        client.seek_to_beginning(*added)
