"""Timers through the real broker: wakes sent again change nothing, the gauges count exactly,
lateness counts firings, and the worker's RocksDB memory is bounded by one setting."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from kafka import KafkaConsumer, TopicPartition

from orchestrator.core.decide import WAKE
from orchestrator.core.event import Event
from tests.integration.conftest import running_worker
from tests.integration.harness import WorkerProcess, event

JOURNEYS = {
    "nudge": """id: nudge
version: 1
description: Viewed - a nudge two seconds later
trigger: {event: product_view}
reentry: always
steps:
  - wait: 2s
  - action: {channel: email, action: nudge, payload: {product: '{{ trigger.properties.product }}'}}
""",
    "hold": """id: hold
version: 1
description: Pending for a week
trigger: {event: hold_wait}
reentry: once
steps:
  - wait: 7d
  - action: {channel: email, action: week_later}
""",
    **{
        name: f"""id: {name}
version: 1
description: Viewed as a pair - {name} two seconds later, due with its twin
trigger: {{event: pair_view}}
steps:
  - wait: 2s
  - action: {{channel: email, action: {name}}}
"""
        for name in ("pair_a", "pair_b")
    },
}


@pytest.fixture(scope="module")
def journeys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("timer-journeys")
    for name, text in JOURNEYS.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


@pytest.fixture(scope="module")
def timer_worker(prefix: str, tmp_path_factory: pytest.TempPathFactory, journeys_dir: Path) -> Iterator[WorkerProcess]:
    with running_worker(
        prefix,
        tmp_path_factory.mktemp("tworker"),
        ORCH_RULES="",
        ORCH_TIMER_INTERVAL_S="0.1",
        ORCH_JOURNEYS_DIR=str(journeys_dir),
    ) as w:
        yield w


def changelog_records(worker: WorkerProcess, table: str, key: bytes) -> int:
    """How many records the table's changelog topic holds for ``key`` (up to its end now)."""
    topic = f"{worker.prefix}orchestrator-{table}-changelog"
    consumer = KafkaConsumer(bootstrap_servers=worker.bootstrap.split(","), group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        found = 0
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in consumer.poll(timeout_ms=500).values():
                found += sum(1 for r in records if r.key == key)
        return found
    finally:
        consumer.close()


def send_wake(worker: WorkerProcess, customer: str, due: float) -> None:
    """A wake exactly like the timer's, straight onto the customer's partition."""
    wake = Event(f"wake:{due:.3f}", WAKE, due, customer, "", time.time(), properties={"clock": time.time()})
    worker.producer.send(
        worker.names.customer_events, key=customer.encode(), value=msgpack.packb(wake.to_wire(), use_bin_type=True)
    )
    worker.producer.flush(timeout=30)


def wait_for(worker: WorkerProcess, name: str, value: float, timeout: float = 30, **labels: str) -> None:
    deadline = time.monotonic() + timeout
    while (seen := worker.metric(name, **labels)) != value:
        assert time.monotonic() < deadline, f"{name}{labels} is {seen}, never {value}"
        time.sleep(0.2)


def test_a_wake_sent_again_neither_fires_twice_nor_rewrites_the_customer(timer_worker: WorkerProcess) -> None:
    w = timer_worker
    stale = w.metric("orchestrator_identity_events_total", outcome="stale_wake")
    fired = w.metric("orchestrator_timer_lateness_seconds_count")
    w.publish("web", event("d-1", "product_view", "dana", product="sku-lamp"))
    [command] = w.commands(1, customer="dana")
    wait_for(w, "orchestrator_timer_lateness_seconds_count", fired + 1)
    written = changelog_records(w, "customers", b"dana")

    for _ in range(3):  # the timer's own wake again, as a worker that was behind used to resend it
        send_wake(w, "dana", command["issued_at"])
    wait_for(w, "orchestrator_identity_events_total", stale + 3, outcome="stale_wake")
    w.publish("web", event("s-1", "page_view", "sentinel"))  # a later write, to know the changelog caught up
    deadline = time.monotonic() + 30
    while changelog_records(w, "customers", b"sentinel") == 0:
        assert time.monotonic() < deadline
        time.sleep(0.3)

    assert changelog_records(w, "customers", b"dana") == written, "a wake that fired nothing rewrote the state"
    assert [c["action"] for c in w.commands(2, customer="dana", timeout=5)] == ["nudge"]
    assert w.metric("orchestrator_timer_lateness_seconds_count") == fired + 1, "lateness counts firings, not wakes"


def test_two_waits_fired_by_one_wake_count_as_two_firings(timer_worker: WorkerProcess) -> None:
    """One decision fires both twins' waits: the lateness histogram counts each firing."""
    w = timer_worker
    fired = w.metric("orchestrator_timer_lateness_seconds_count")
    w.publish("web", event("p-1", "pair_view", "pat"))
    commands = w.commands(2, customer="pat")
    assert sorted(c["action"] for c in commands) == ["pair_a", "pair_b"]
    wait_for(w, "orchestrator_timer_lateness_seconds_count", fired + 2)


def test_a_wake_before_the_wait_is_due_changes_nothing_and_the_wait_still_fires_once(
    timer_worker: WorkerProcess,
) -> None:
    w = timer_worker
    stale = w.metric("orchestrator_identity_events_total", outcome="stale_wake")
    w.publish("web", event("e-1", "product_view", "eve", product="sku-tent"))
    deadline = time.monotonic() + 30
    while (written := changelog_records(w, "customers", b"eve")) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    send_wake(w, "eve", time.time() - 60)  # a stale wake from long ago: nothing of Eve's is due
    wait_for(w, "orchestrator_identity_events_total", stale + 1, outcome="stale_wake")
    rewritten = changelog_records(w, "customers", b"eve")

    assert [c["payload"] for c in w.commands(2, customer="eve", timeout=12)] == [{"product": "sku-tent"}]
    assert rewritten == written


HOLDING = {"journey": "hold", "version": "1", "step": "step1"}  # orchestrator_journey_customers labels


def test_the_gauges_count_pending_waits_and_profiles_exactly_also_after_a_restart(
    prefix: str, tmp_path_factory: pytest.TempPathFactory, journeys_dir: Path
) -> None:
    count = 40
    with running_worker(
        prefix + "g.", tmp_path_factory.mktemp("gauges"), ORCH_RULES="", ORCH_JOURNEYS_DIR=str(journeys_dir)
    ) as w:
        events = [event(f"h-{i}", "hold_wait", f"holder-{i}") for i in range(count)]
        for e in events[:10]:  # some with a cookie: pointer keys in the table, not customers
            e["identifiers"] = {"cookie": f"ck-{e['customer_id']}"}
        w.publish("web", *events)
        wait_for(w, "orchestrator_journey_entries_total", count, journey="hold", version="1")
        w.publish("web", *[event(f"h2-{i}", "page_view", f"holder-{i}") for i in range(count)])  # rewrites

        wait_for(w, "orchestrator_timers_pending", count)
        wait_for(w, "orchestrator_customers", count)
        wait_for(w, "orchestrator_journey_customers", count, **HOLDING)
        assert w.stop() == 0
        w.start()  # counted again from RocksDB

        wait_for(w, "orchestrator_timers_pending", count)
        wait_for(w, "orchestrator_customers", count)
        wait_for(w, "orchestrator_journey_customers", count, **HOLDING)
        w.publish("web", event("x-1", "erase", "holder-0"))  # an erasure removes a profile and its wait
        wait_for(w, "orchestrator_customers", count - 1)
        wait_for(w, "orchestrator_timers_pending", count - 1)
        wait_for(w, "orchestrator_journey_customers", count - 1, **HOLDING)
        assert w.metric("orchestrator_journey_exits_total", journey="hold", version="1", reason="erased") == 1


def test_every_table_partition_shares_one_bounded_rocksdb_cache(tmp_path: Path) -> None:
    import faust

    from orchestrator.app import bound_rocksdb_memory

    app = faust.App("rocks-bound", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    tables = [app.Table(name, partitions=2, key_type=bytes, value_type=bytes) for name in ("one", "two")]
    bound_rocksdb_memory(app, 32 * 1024**2)

    stores = [table.data for table in tables]
    dbs = [store._db_for_partition(p) for store in stores for p in (0, 1)]  # type: ignore[attr-defined]

    assert {db.property_int_value("rocksdb.block-cache-capacity") for db in dbs} == {32 * 1024**2}
    assert len({id(store.rocksdb_options.cache) for store in stores}) == 1  # type: ignore[attr-defined]
    for db in dbs:
        db.close()
