"""The journey catalogue's compacted topic, as the CLI reads and writes it: whole, and one
record at a time, each acknowledged before the next (the order is the catalogue's history)."""

from __future__ import annotations

from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from orchestrator.errors import CliError
from orchestrator.kafka.clients import consumer, producer


def read_published(bootstrap: str, topic: str) -> dict[str, str]:
    """The catalogue topic from start to end, as compaction would leave it: ``{"id:version":
    yaml text, "id:retired": marker}``."""
    # Never create the topic: a broker would give it its default partitions and no compaction.
    client = consumer(bootstrap, auto_offset_reset="earliest", allow_auto_create_topics=False)
    try:
        tp = TopicPartition(topic, 0)
        if not client.partitions_for_topic(topic):  # None or empty: not there
            return {}
        client.assign([tp])
        client.seek_to_beginning(tp)
        end = client.end_offsets([tp])[tp]
        found: dict[str, str] = {}
        while client.position(tp) < end:
            for records in client.poll(timeout_ms=1000).values():
                for r in records:
                    key = (r.key or b"").decode(errors="replace")
                    if r.value is None:
                        found.pop(key, None)
                    else:
                        found[key] = r.value.decode(errors="replace")
        return found
    finally:
        client.close()


def write_one(bootstrap: str, topic: str, key: str, value: bytes | None) -> None:
    client = producer(bootstrap)
    try:
        write_record(client, topic, key, value)
    finally:
        client.close()


def write_record(client: KafkaProducer, topic: str, key: str, value: bytes | None) -> None:
    """Send one record and wait until the broker has it, so whatever is sent next comes after it."""
    try:
        client.send(topic, key=key.encode(), value=value).get(timeout=30)
    except KafkaError as exc:
        raise CliError(f"could not write {key} to {topic}: {exc}") from exc
