"""Waits through crashes and hand-overs, on the real broker with real worker processes.

A worker SIGKILLed in the middle of waits, a wait that falls due while no worker runs,
and a second worker of the same group taking partitions over (by a rebalance, then
because the first one is killed): every wait fires exactly once, and its command is
delivered. Counted on the action topics, per customer and action, after waiting beyond the
last due time: one action id each, and one copy of it when a worker restarts on its own
disk, killed or stopped: the restarted worker sends again what its redelivered records
decided unless the action topic has it (:mod:`agents.outbox`). A worker that takes over
another's partitions may still send a copy (with the same action id, for channels to
drop): its state comes from the changelog, which can lag the commands. The last test holds
the worst window open: a worker killed after a decision wrote its state but before its
command left the producer.

Each test has a topic prefix (so a consumer group) of its own, as it kills its workers.
The workers are told to leave a dead member out of the group after 6 s (Kafka's least,
``group.min.session.timeout.ms``) instead of Faust's 60 s, so a worker restarted after
SIGKILL rejoins within seconds: the guarantees do not depend on it, only the test's time.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from tests.integration.conftest import forget_prefix, running_worker
from tests.integration.harness import WorkerProcess, event
from tests.integration.test_journeys_stream import publish
from tests.integration.test_timers_stream import wait_for

WORKER_ENV = {
    "ORCH_RULES": "",  # the journey alone sends commands
    "ORCH_TIMER_INTERVAL_S": "0.1",
    "ORCH_CHANNELS": "web,email",  # fewer topics: quicker starts and rebalances
    "BROKER_SESSION_TIMEOUT": "6",  # Faust reads these from the environment
    "BROKER_HEARTBEAT_INTERVAL": "1",
}
SETTLE_S = 8.0  # read the action topics this long beyond the last due time: a duplicate has time to show


@pytest.fixture
def own_prefix(prefix: str) -> Iterator[str]:
    name = f"{prefix}{uuid.uuid4().hex[:6]}."
    yield name
    forget_prefix(name)


def enter(worker: WorkerProcess, tag: str, count: int, gap_s: float) -> dict[str, float]:
    """``count`` customers view a product, ``gap_s`` apart; when each was sent."""
    entered: dict[str, float] = {}
    for i in range(count):
        customer = f"{tag}-{i:02d}"
        entered[customer] = time.time()
        worker.publish("web", event(f"{customer}-view", "product_view", customer, product=f"sku-{customer}"))
        time.sleep(gap_s)
    return entered


def settled_commands(worker: WorkerProcess, expected: int, last_due: float) -> list[dict[str, Any]]:
    """Every command on the action topics by :data:`SETTLE_S` after ``last_due`` (epoch
    seconds); sooner only if there are more than twice ``expected``: a copy of each, after
    a crash, is the most there can be."""
    return worker.commands(2 * expected + 1, timeout=max(0.0, last_due - time.time()) + SETTLE_S)


def assert_each_fired_once(
    commands: list[dict[str, Any]], entered: dict[str, float], wait_s: float, *, copies: bool = True
) -> None:
    """One nudge per customer, none missing; sent twice only as a copy (if ``copies``: a hand-over),
    with the same action id and all; the payload its own wait would have had; none before the
    wait was over."""
    fired = {(c["customer_id"], c["action"]): c["action_id"] for c in commands}
    assert sorted(fired) == [(customer, "nudge") for customer in sorted(entered)], sorted(fired)
    distinct = {json.dumps(c, sort_keys=True) for c in commands}
    assert len(distinct) == len(fired), "a wait fired twice: two commands for it differ"
    if not copies:
        assert len(commands) == len(fired), sorted(Counter(c["customer_id"] for c in commands).items())
    for command in commands:
        customer = command["customer_id"]
        assert command["journey"] == "nudge" and command["channel"] == "email"
        assert command["payload"] == {"product": f"sku-{customer}", "version": 1}
        assert command["issued_at"] >= entered[customer] + wait_s, f"{customer}'s wait fired early"


def test_a_worker_killed_in_the_middle_of_waits_fires_each_exactly_once_after_its_restart(
    own_prefix: str, tmp_path: Path
) -> None:
    wait_s = 4.0
    with running_worker(own_prefix, tmp_path / "worker", **WORKER_ENV) as w:
        publish(w, tmp_path / "journeys", 1, "4s")
        entered = enter(w, "kil", 20, 0.2)  # due over 4 s, from just after the last has entered
        first_due, last_due = min(entered.values()) + wait_s, max(entered.values()) + wait_s
        time.sleep(max(0.0, (first_due + last_due) / 2 - time.time()))  # half of them due

        sent = w.metric("orchestrator_commands_emitted_total", channel="email", action="nudge")
        w.stop(signal.SIGKILL)
        w.start()
        commands = settled_commands(w, len(entered), last_due)

    assert_each_fired_once(commands, entered, wait_s, copies=False)
    assert 0 < sent < len(entered), f"{sent:.0f} of the waits had fired before the kill: it fell around none"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_a_wait_that_falls_due_while_the_worker_is_down_fires_once_soon_after_its_restart(
    own_prefix: str, tmp_path: Path, sig: int
) -> None:
    wait_s = 3.0
    with running_worker(own_prefix, tmp_path / "worker", **WORKER_ENV) as w:
        publish(w, tmp_path / "journeys", 1, "3s")
        entered = enter(w, "down", 1, 0.0)
        wait_for(w, "orchestrator_journey_entries_total", 1, journey="nudge", version="1")  # waiting
        waiting_since = time.time()

        w.stop(sig)
        time.sleep(max(0.0, waiting_since + wait_s + 1.0 - time.time()))  # due while down
        w.start()
        ready = time.monotonic()
        [first] = w.commands(1, timeout=10)
        took = time.monotonic() - ready
        commands = settled_commands(w, 1, time.time())

    assert took < 5.0, f"the overdue wait fired {took:.1f} s after the restart"
    assert commands == [first]
    assert_each_fired_once(commands, entered, wait_s, copies=False)
    assert first["issued_at"] <= waiting_since + wait_s, "dated at its due time, as it would have been on time"


def test_waits_fire_exactly_once_while_a_second_worker_takes_partitions_over_and_the_first_is_killed(
    own_prefix: str, tmp_path: Path
) -> None:
    """Two workers of one group share the 4 partitions: customers wait through the
    rebalance a second worker's start makes, then through the first one's death."""
    wait_s = 10.0
    with running_worker(own_prefix, tmp_path / "first", **WORKER_ENV) as first:
        publish(first, tmp_path / "journeys", 1, "10s")
        entered = enter(first, "pre", 10, 0.1)  # waiting through the rebalance
        with running_worker(own_prefix, tmp_path / "second", **WORKER_ENV) as second:
            entered |= enter(first, "post", 10, 0.3)  # waiting through the kill
            pre_due = max(t for c, t in entered.items() if c.startswith("pre")) + wait_s
            time.sleep(max(0.0, pre_due + 1.0 - time.time()))  # each worker fires its share of them
            all_waiting(first, second, len(entered))  # a slow start of the second must not kill a view undecided

            first.stop(signal.SIGKILL)
            commands = settled_commands(second, len(entered), max(entered.values()) + wait_s)
            emitted = second.metric("orchestrator_commands_emitted_total", channel="email", action="nudge")

    assert_each_fired_once(commands, entered, wait_s, copies=False)
    assert 0 < emitted < len(entered), f"the second worker sent {emitted:.0f} of the commands: no hand-over"


def all_waiting(first: WorkerProcess, second: WorkerProcess, count: int, timeout: float = 30) -> None:
    """Wait until the two workers between them have entered ``count`` customers into the journey.

    A view the first worker had not decided when killed is decided by the second after Kafka's
    session timeout and its rebalance, and its wait starts then (the wall clock): it would be
    due after the test stops reading (seen on a slow CI machine, where the second worker took
    long enough to start that the kill came right after the last views were sent)."""
    deadline = time.monotonic() + timeout
    labels = {"journey": "nudge", "version": "1"}
    while (seen := sum(w.metric("orchestrator_journey_entries_total", **labels) for w in (first, second))) < count:
        assert time.monotonic() < deadline, f"{seen:.0f} of {count} customers entered the journey"
        time.sleep(0.2)


def test_a_worker_killed_right_after_a_wait_fired_still_sends_its_command(own_prefix: str, tmp_path: Path) -> None:
    """The window made wide, not made up: the producer holds each batch 2 s (a lingering producer
    is an ordinary setting) and offsets are committed once a minute (Faust flushes the producer
    before every commit), so the worker dies with the command in its producer, as it does by
    chance in a burst of waits with the defaults (before the outbox, 300 or 1,000 waits due at
    once and a SIGKILL in the burst lost 1-3 commands in 9 runs of 13). The restarted worker
    reads the wake again, finds the wait fired (the state was written) and sends the command
    from the customer's outbox."""
    wait_s = 2.0
    env = WORKER_ENV | {"PRODUCER_LINGER": "2", "BROKER_COMMIT_INTERVAL": "60"}
    with running_worker(own_prefix, tmp_path / "worker", **env) as w:
        publish(w, tmp_path / "journeys", 1, "2s")
        entered = enter(w, "lost", 1, 0.0)
        wait_for(w, "orchestrator_commands_emitted_total", 1, channel="email", action="nudge")  # in the producer

        w.stop(signal.SIGKILL)
        w.start()
        commands = settled_commands(w, 1, time.time())
        resent = w.metric("orchestrator_commands_resent_total", channel="email", action="nudge")

    assert_each_fired_once(commands, entered, wait_s, copies=False)
    assert resent == 1, "the restarted worker did not send the command again from the outbox"


def test_a_worker_taking_over_a_record_the_dead_one_decided_does_not_send_its_command_twice(
    own_prefix: str, tmp_path: Path
) -> None:
    """The changelog lagging the commands, made on purpose: the first worker decides a search
    (a remarketing ad, at once) and is killed before it commits; then its table's changelog is
    deleted, as if those writes had died in its producer while the ad left. The worker that
    takes over, on a disk of its own, finds the search new and decides the same ad again; the
    search was in the log before it took the partition over, so it looks the ad up on the ads
    topic first (:mod:`agents.handover`) and does not send it again."""
    env = {k: v for k, v in WORKER_ENV.items() if k not in ("ORCH_RULES", "ORCH_CHANNELS")}
    env |= {"BROKER_COMMIT_INTERVAL": "60"}
    with running_worker(own_prefix, tmp_path / "first", **env) as first:
        first.publish("search", event("e-1", "search", "c-ho", query="trail shoes"))
        [ad] = first.commands(1, timeout=30)
        first.stop(signal.SIGKILL)
    delete_changelog(first.bootstrap, f"{own_prefix}orchestrator-customers-changelog")

    with running_worker(own_prefix, tmp_path / "second", **env) as second:
        commands = second.commands(3, timeout=SETTLE_S)
        found = second.metric("orchestrator_commands_sent_before_total", channel="ads", action="remarketing_ad")

    assert commands == [ad], "the ad went out twice"
    assert found == 1, "the second worker did not decide the search again"


def delete_changelog(bootstrap: str, topic: str) -> None:
    """Delete ``topic`` (a compacted topic's records cannot be deleted alone); the next worker
    creates it anew, empty."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        assert topic in admin.list_topics(), f"no topic {topic}"
        admin.delete_topics([topic], timeout_ms=30_000)
        deadline = time.monotonic() + 30
        while topic in admin.list_topics():
            assert time.monotonic() < deadline, f"{topic} still there"
            time.sleep(0.2)
    finally:
        admin.close()
