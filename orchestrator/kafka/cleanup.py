"""Remove everything one topic prefix made: its topics, its consumer group, its Redis keys.

For throwaway deployments (a benchmark run, a test module). A broker that keeps
every run's topics grows slow: with a few thousand leftover topics, metadata for a
topic just created takes seconds to reach the clients, which is what sets off
Faust's rebalance hangs (see :mod:`agents.rebalance_watchdog`).
"""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass

import redis
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from orchestrator.kafka.clients import AdminClient

UNLINK_BATCH = 5_000


@dataclass(frozen=True)
class Removed:
    topics: int
    redis_keys: int
    group_deleted: bool

    def __str__(self) -> str:
        group = "deleted the consumer group" if self.group_deleted else "kept the consumer group (still in use)"
        return f"{self.topics} topics and {self.redis_keys:,} Redis keys; {group}"


def remove_prefix(bootstrap: str, redis_url: str, prefix: str, *, settle_s: float = 0.0) -> Removed:
    """Delete the topics, the consumer group (``<prefix>orchestrator``) and the Redis keys
    under ``prefix``. ``settle_s``: wait that long and delete again, for when a client
    that is still closing may re-create a topic by asking for it."""
    admin = AdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=60_000)
    try:
        topics = _delete_topics(admin, prefix)
        if settle_s > 0:
            time.sleep(settle_s)
            _delete_topics(admin, prefix)
        group_deleted = _delete_group(admin, f"{prefix}orchestrator")
    finally:
        admin.close()
    return Removed(topics, _unlink_keys(redis_url, prefix), group_deleted)


def _delete_topics(admin: KafkaAdminClient, prefix: str) -> int:
    topics = [t for t in admin.list_topics() if t.startswith(prefix)]
    if topics:
        admin.delete_topics(topics, timeout_ms=60_000)
    return len(topics)


def _delete_group(admin: KafkaAdminClient, group: str) -> bool:
    # kafka-python 3 calls it delete_groups; older releases delete_consumer_groups.
    delete_groups = getattr(admin, "delete_groups", None) or admin.delete_consumer_groups
    with suppress(KafkaError):  # it may already be gone with its last member
        result = delete_groups([group])
        return not isinstance(result, dict) or result.get(group) in (None, "OK")
    return False


def _unlink_keys(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url)
    removed, batch = 0, []
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=10_000):
            batch.append(key)
            if len(batch) >= UNLINK_BATCH:
                removed, batch = removed + int(client.unlink(*batch)), []
        if batch:
            removed += int(client.unlink(*batch))
    finally:
        client.close()
    return removed
