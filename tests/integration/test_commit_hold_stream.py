"""Offsets are committed only once Redis has the writes of the records they cover.

On the real broker with a real worker that commits every half second and flushes its read
model only every 30 s: once the consumer group's committed offsets cover the customers'
events, their profiles must be in Redis, also when the worker is SIGKILLed at once (a
record whose offset is committed is not read again, so nothing would write its profile
later). Before ``agents.commit_hold``, the offsets were committed and the profiles waited
for the flush, which the kill prevented. And while Redis refuses writes, offsets are not
committed at all (``orchestrator_commits_held_total``) until it takes them again.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from orchestrator.topics import TopicNames
from tests.integration.conftest import BOOTSTRAP, REDIS_URL, running_worker
from tests.integration.harness import WorkerProcess, event, free_port
from tests.integration.test_identity_stream import lock_out, private_redis
from tests.integration.test_timers_crash_stream import WORKER_ENV
from tests.integration.test_timers_crash_stream import own_prefix as own_prefix  # the fixture

PEOPLE = 8
SLOW_READ_MODEL = WORKER_ENV | {"BROKER_COMMIT_INTERVAL": "0.5", "ORCH_READMODEL_FLUSH_INTERVAL_S": "30"}
DEADLINE_S = 45.0


def visit(worker: WorkerProcess, tag: str) -> list[str]:
    customers = [f"{tag}-{i}" for i in range(PEOPLE)]
    worker.publish("web", *(event(f"{c}-page", "page_view", c) for c in customers))
    return customers


def committed_and_end(prefix: str) -> tuple[int, int]:
    """Offsets the worker's group has committed on the customer-events topic, summed over its
    partitions, and the topic's end offsets, summed likewise."""
    topic = TopicNames(prefix).customer_events
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None, enable_auto_commit=False)
    try:
        group = f"{prefix}orchestrator"
        committed = admin.list_group_offsets({group: None}).get(group, {})
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        end = consumer.end_offsets(partitions)
        return sum(committed[tp].offset for tp in partitions if tp in committed), sum(end.values())
    finally:
        admin.close()
        consumer.close()


def all_committed(prefix: str, records: int) -> None:
    """Wait until the group's offsets cover every record on the customer-events topic, at least ``records``."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        committed, end = committed_and_end(prefix)
        if end >= records and committed == end:
            return
        assert time.monotonic() < deadline, f"offsets committed {committed} of {end}"
        time.sleep(0.2)


def in_redis(store: redis.Redis, prefix: str, customers: list[str]) -> list[str]:
    return [c for c in customers if store.exists(f"{prefix}customer:{c}")]


def test_once_offsets_are_committed_the_profiles_they_cover_are_in_redis_even_if_the_worker_dies_at_once(
    own_prefix: str, tmp_path: Path
) -> None:
    store = redis.Redis.from_url(REDIS_URL)
    try:
        with running_worker(own_prefix, tmp_path / "worker", **SLOW_READ_MODEL) as w:
            customers = visit(w, "held")
            all_committed(own_prefix, PEOPLE)
            w.stop(signal.SIGKILL)
            assert in_redis(store, own_prefix, customers) == customers
            profile = json.loads(store.get(f"{own_prefix}customer:{customers[0]}") or b"{}")
            assert profile["events"] == 1
    finally:
        store.close()


def test_while_redis_refuses_writes_no_offset_is_committed_and_once_it_takes_them_all_are(
    prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    own = f"{prefix}commitheld."
    with private_redis() as (url, store):
        w = WorkerProcess(
            prefix=own, bootstrap=BOOTSTRAP, redis_url=url, web_port=free_port(),
            data_dir=tmp_path_factory.mktemp("commitheld"), **SLOW_READ_MODEL,
        )  # fmt: skip
        w.start()
        try:
            first = visit(w, "before")
            all_committed(own, PEOPLE)
            committed_before, _ = committed_and_end(own)
            lock_out(store)

            later = visit(w, "during")
            deadline = time.monotonic() + DEADLINE_S
            while w.metric("orchestrator_commits_held_total") < 2:
                assert time.monotonic() < deadline, f"no commit was held while Redis refused writes:\n{w.log_tail(60)}"
                time.sleep(0.2)
            assert committed_and_end(own)[0] == committed_before

            store.config_set("requirepass", "")
            all_committed(own, 2 * PEOPLE)
            assert in_redis(store, own, first + later) == first + later
        finally:
            w.stop()
