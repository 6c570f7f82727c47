"""Follow action topics without a consumer group, picking up new topics as they appear."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

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


def follow(
    bootstrap: str,
    pattern: str,
    *,
    from_beginning: bool,
    deadline: float | None = None,
    warn: Callable[[str], None] = lambda _: None,
) -> Iterator[Record]:
    """Yield records from every topic matching ``pattern`` until ``deadline`` (monotonic).

    Topics that appear after we start are read from their beginning, so a
    command that creates its channel's topic is not missed. A broker lost after
    the start is waited for, as a worker waits: ``warn`` is told once when it
    goes and once when it is back, and following goes on where it stopped.
    """
    matcher = re.compile(pattern)
    client = consumer(bootstrap, auto_offset_reset="earliest" if from_beginning else "latest")
    assigned: set[TopicPartition] = set()
    next_scan = 0.0
    first_scan, lost = True, False
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + RESCAN_S
                    _assign_new(client, matcher, assigned, start_at_end=first_scan and not from_beginning)
                    first_scan = False
                    if lost:
                        lost = False
                        warn("the broker is back; following again")
                batches = client.poll(timeout_ms=200) if assigned else {}
            except KafkaError as exc:
                if first_scan:
                    raise
                if not lost:
                    lost = True
                    warn(f"lost the broker ({exc}); still following, trying again every {RESCAN_S:g}s")
                batches = {}
            if not batches:
                time.sleep(0.2 if not assigned or lost else 0)
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
