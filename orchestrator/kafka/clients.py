"""Create kafka-python clients that fail fast with a readable error."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaConnectionError, KafkaError, RetriableError, TopicAlreadyExistsError

from orchestrator.errors import CliError, Unreachable, shown

TIMEOUT_MS = 8000
LEADER_WAIT_S = 30.0  # how long the worker waits at start for the leaders of topics it created
COMPACTED = {"cleanup.policy": "compact"}  # topics that keep the latest record per key

# kafka-python logs every failed connection attempt; the CLI says it once itself.
logging.getLogger("kafka").setLevel(logging.CRITICAL)
log = logging.getLogger(__name__)


def _unreachable(bootstrap: str, exc: Exception) -> CliError:
    """Connection trouble reads as 'cannot reach'; anything else says what Kafka said."""
    if isinstance(exc, (RetriableError, KafkaConnectionError, OSError)):
        return Unreachable.service("Kafka", bootstrap, exc)
    return CliError(f"Kafka at {shown(bootstrap)}: {exc}")


class _ClosedIfUnbuilt:
    """Workaround: kafka-python 3.0's consumer and admin client start their network thread
    before they look for a broker, and a constructor that finds none (``bootstrap_timeout_ms``)
    raises without stopping it. The thread and its socket stayed for good: a worker's topic
    discovery leaked one every ``ORCH_TOPIC_DISCOVERY_INTERVAL_S`` while Kafka was down. A
    failed constructor here closes the network client it made, which stops the thread."""

    def __init__(self, **configs: Any) -> None:
        try:
            super().__init__(**configs)
        except BaseException:
            inner = getattr(self, "_client", None)
            if inner is not None:
                with contextlib.suppress(Exception):
                    inner.close()
            raise


class Consumer(_ClosedIfUnbuilt, KafkaConsumer):
    """A consumer whose failed constructor leaves no network thread behind."""


class AdminClient(_ClosedIfUnbuilt, KafkaAdminClient):
    """An admin client whose failed constructor leaves no network thread behind."""


def producer(bootstrap: str) -> KafkaProducer:
    try:
        return KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            acks="all",
            linger_ms=5,
            max_block_ms=TIMEOUT_MS,
            request_timeout_ms=TIMEOUT_MS,
        )
    except (KafkaError, OSError) as exc:
        raise _unreachable(bootstrap, exc) from exc


def consumer(bootstrap: str, **options: Any) -> KafkaConsumer:
    """A group-less consumer: tools read, they never commit offsets."""
    try:
        return Consumer(
            bootstrap_servers=bootstrap.split(","),
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=max(TIMEOUT_MS, 30_000),
            **options,
        )
    except (KafkaError, OSError) as exc:
        raise _unreachable(bootstrap, exc) from exc


def list_topics(bootstrap: str, timeout_ms: int | None = None) -> list[str]:
    """Every topic name the cluster has; ``timeout_ms`` bounds the wait for a first broker
    (kafka-python's default: 30 s)."""
    client = consumer(bootstrap) if timeout_ms is None else consumer(bootstrap, bootstrap_timeout_ms=timeout_ms)
    try:
        return sorted(client.topics())
    except (KafkaError, OSError) as exc:
        raise _unreachable(bootstrap, exc) from exc
    finally:
        client.close()


def ensure_topics(
    bootstrap: str,
    topics: list[str],
    partitions: int,
    config: dict[str, str] | None = None,
    replication: int = 1,
    *,
    wait_s: float = 0.0,
) -> None:
    """Create missing topics with ``partitions`` (and topic ``config``); existing ones are left alone.

    ``wait_s`` > 0: then wait up to that long until every partition of ``topics`` has a
    leader. A producer whose first send races a topic's creation gets
    NotLeaderForPartition, and aiokafka's producer has been seen to hang for good after it
    (a worker that stopped consuming in the bad-input test)."""
    try:
        admin = AdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=TIMEOUT_MS)
    except (KafkaError, OSError) as exc:
        raise _unreachable(bootstrap, exc) from exc
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(t, partitions, replication, topic_configs=config or {}) for t in topics if t not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                admin.create_topics(missing)
        if wait_s > 0:
            _wait_for_leaders(admin, topics, wait_s)
    finally:
        admin.close()


def _wait_for_leaders(admin: KafkaAdminClient, topics: list[str], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while not _all_led(admin.describe_topics(topics), topics):
        if time.monotonic() > deadline:
            log.warning("topics still without a leader after %.0f s: %s", wait_s, ", ".join(topics))
            return
        time.sleep(0.1)


def _all_led(described: list[dict[str, Any]], topics: list[str]) -> bool:
    """True when every topic named is described, with partitions, each with a leader."""
    found = {t.get("name", t.get("topic")): t for t in described}  # kafka-python 3 spells them name/leader_id
    for name in topics:
        topic = found.get(name)
        if topic is None or topic.get("error_code") or not topic.get("partitions"):
            return False
        if any(p.get("leader_id", p.get("leader", -1)) < 0 or p.get("error_code") for p in topic["partitions"]):
            return False
    return True


def check_kafka(bootstrap: str) -> None:
    """Raise :class:`Unreachable` unless a broker answers a metadata request."""
    list_topics(bootstrap)
