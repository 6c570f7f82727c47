"""Single customer view through the real broker: merges, races, hashing, consent, erasure."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from agents.rebalance_watchdog import EXIT_STUCK
from orchestrator.kafka.tail import follow
from tests.integration.conftest import BOOTSTRAP, REDIS_URL, running_worker
from tests.integration.harness import WorkerProcess, cli_env, free_port

HASH_KEY = "it-secret"
DEADLINE_S = 60.0
RETENTION_S = 3 * 86400


@pytest.fixture(scope="module")
def worker(prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    env = {"ORCH_IDENTITY_HASH_KEY": HASH_KEY, "ORCH_TOPIC_RETENTION_S": str(RETENTION_S)}
    with running_worker(prefix, tmp_path_factory.mktemp("worker"), **env) as proc:
        yield proc


@pytest.fixture(scope="module")
def store() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def ev(event_id: str, kind: str, customer_id: str | None = None, **ids: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"event_id": event_id, "type": kind, "ts": time.time(), "properties": ids.pop("props", {})}
    if customer_id:
        doc["customer_id"] = customer_id
    if ids:
        doc["identifiers"] = ids
    return doc


def profile_when(store: redis.Redis, prefix: str, key: str, ready: Any) -> dict[str, Any]:
    """The customer's read-model profile once ``ready(profile)`` holds; fails with the last seen."""
    seen = None
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        raw = store.get(f"{prefix}customer:{key}")
        seen = json.loads(raw) if raw else None
        if seen is not None and ready(seen):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"profile {key} never got there; last seen: {json.dumps(seen)[:2000]}")


def customer_cli(prefix: str, ident: str) -> subprocess.CompletedProcess[str]:
    """``orchestrator customer IDENT`` as a user runs it, with this module's hash key."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "customer", ident],
        env=cli_env(prefix, BOOTSTRAP, REDIS_URL, ORCH_IDENTITY_HASH_KEY=HASH_KEY),
        capture_output=True,
        text=True,
        timeout=60,
    )


def gone(store: redis.Redis, *keys: str) -> bool:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if not any(store.exists(k) for k in keys):
            return True
        time.sleep(0.2)
    return False


def test_login_merges_browsing_while_events_race_the_merge(
    worker: WorkerProcess, store: redis.Redis, prefix: str
) -> None:
    before = [ev(f"race-a{i}", "page_view", cookie="ck-race") for i in range(20)]
    login = ev("race-login", "identify", "racer", cookie="ck-race", email="Racer@Example.com")
    after = [ev(f"race-b{i}", "page_view", cookie="ck-race") for i in range(20)]
    by_email = [ev(f"race-c{i}", "page_view", email="racer@example.com") for i in range(5)]
    # Different channel topics, no flush between: the identify is in flight together
    # with the cookie's events on both sides of it.
    for doc in before:
        worker.producer.send(worker.names.events("web"), value=json.dumps(doc).encode())
    worker.producer.send(worker.names.events("app"), value=json.dumps(login).encode())
    for doc in after:
        worker.producer.send(worker.names.events("web"), value=json.dumps(doc).encode())
    for doc in by_email:
        worker.producer.send(worker.names.events("email"), value=json.dumps(doc).encode())
    worker.producer.flush(timeout=30)

    merged = profile_when(store, prefix, "racer", lambda p: p["events"] >= 46)

    assert merged["events"] == 46, "every event counted exactly once"
    assert merged["type_counts"] == {"page_view": 45, "identify": 1}
    assert merged["identifiers"]["cookie"] == "ck-race"
    assert gone(store, f"{prefix}customer:cookie:ck-race"), "the anonymous profile is gone from Redis"
    assert store.get(f"{prefix}alias:cookie:ck-race") == b"racer"
    assert worker.metric("orchestrator_identity_events_total", outcome="merged_in") >= 1


def test_a_purchase_racing_the_merge_still_stops_the_ad_the_anonymous_profile_runs(
    worker: WorkerProcess, store: redis.Redis, prefix: str
) -> None:
    """Whichever comes first at the survivor, the purchase or the anonymous profile's state,
    the ad for what was bought is stopped once."""
    view = ev("rr-1", "product_view", cookie="ck-rr", email="rr@example.com", props={"product": "sku-rr"})
    login = ev("rr-2", "identify", "rrbuyer", email="rr@example.com")
    purchase = ev("rr-3", "purchase", "rrbuyer", props={"product": "sku-rr", "value": 30})
    for topic, doc in (("web", view), ("app", login), ("store", purchase)):
        worker.producer.send(worker.names.events(topic), value=json.dumps(doc).encode())
    worker.producer.flush(timeout=30)

    profile_when(store, prefix, "rrbuyer", lambda p: p["events"] == 3 and not p["remarketed"])

    stops = [c for c in worker.commands(100, timeout=10, customer="rrbuyer") if c["action"] == "remarketing_stop"]
    assert [c["payload"]["subjects"] for c in stops] == [["product:sku-rr"]]


def test_a_customer_id_that_reads_like_a_cookie_is_not_that_cookie(
    worker: WorkerProcess, store: redis.Redis, prefix: str
) -> None:
    """``customer_id: cookie:zz`` and ``identifiers: {cookie: zz}`` are two people until an
    ``identify`` says otherwise; the CLI finds the first as ``customer_id:cookie:zz``."""
    docs = [ev("colon-1", "purchase", "cookie:zz-it", props={"value": 5})]
    docs += [ev(f"colon-{i}", "page_view", cookie="zz-it") for i in (2, 3)]
    for doc in docs:
        worker.producer.send(worker.names.events("web"), value=json.dumps(doc).encode())
    worker.producer.flush(timeout=30)

    known = profile_when(store, prefix, "customer_id:cookie:zz-it", lambda p: p["events"] == 1)
    anonymous = profile_when(store, prefix, "cookie:zz-it", lambda p: p["events"] == 2)
    assert (known["purchases"], anonymous["purchases"]) == (1, 0)
    found = customer_cli(prefix, "customer_id:cookie:zz-it")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["purchases"] == 1


def test_identifiers_are_hashed_in_state_redis_and_internal_topics(
    worker: WorkerProcess, store: redis.Redis, prefix: str
) -> None:
    worker.publish(
        "web", ev("hash-1", "page_view", "hasher", email="Secret.Person@Example.com", phone="+44 20 7946 0000")
    )

    doc = profile_when(store, prefix, "hasher", lambda p: p["events"] >= 1)

    text = json.dumps(doc).lower()
    assert "secret.person" not in text and "7946" not in text
    assert len(doc["identifiers"]["email"]) == 32
    internal = [
        r.value or b""
        for r in follow(BOOTSTRAP, f"^{prefix}orchestrator", from_beginning=True, deadline=time.monotonic() + 5)
    ]
    assert internal, "internal topics were read"
    assert not any(b"secret.person" in value.lower() for value in internal)
    found = customer_cli(prefix, "email:SECRET.person@example.com")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["key"] == "hasher"


def test_an_opt_out_given_anonymously_survives_the_login(
    worker: WorkerProcess, store: redis.Redis, prefix: str
) -> None:
    opt_out_log_in_and_buy(worker, store, prefix, "optout", "oo", product="sku-1", value=20)

    profile_when(store, prefix, "optout", lambda p: p["purchases"] == 1)

    upsells = [c for c in worker.commands(1, timeout=5, customer="optout") if c["action"] == "upsell"]
    assert upsells == []
    held = worker.metric(
        "orchestrator_commands_suppressed_total", channel="email", action="upsell", reason="no_consent"
    )
    assert held >= 1


def erase(prefix: str, who: str, *flags: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "erase", who, "--json", *flags],
        env=cli_env(prefix, BOOTSTRAP, REDIS_URL, ORCH_IDENTITY_HASH_KEY=HASH_KEY),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def latest_changelog_values(prefix: str) -> dict[bytes, bytes | None]:
    latest: dict[bytes, bytes | None] = {}
    topic = f"^{prefix.replace('.', '[.]')}orchestrator-customers-changelog$"
    for record in follow(BOOTSTRAP, topic, from_beginning=True, deadline=time.monotonic() + 5):
        latest[record.key or b""] = record.value
    return latest


def test_erasure_leaves_no_trace_and_a_later_event_starts_afresh(
    worker: WorkerProcess, store: redis.Redis, prefix: str
) -> None:
    worker.publish("web", ev("er-1", "page_view", cookie="ck-er"))
    worker.publish("app", ev("er-2", "identify", "eraseme", cookie="ck-er", email="erase.me@example.com"))
    profile_when(store, prefix, "eraseme", lambda p: p["events"] >= 2)
    before_the_erasure = time.time()

    record = erase(prefix, "email:Erase.Me@example.com")

    assert record["customer"] == "eraseme" and record["found"] is True and record["pointers_removed"] >= 2
    assert "erase.me" not in json.dumps(record)
    assert gone(store, f"{prefix}customer:eraseme", f"{prefix}alias:cookie:ck-er", f"{prefix}decisions:eraseme")
    strings = [k for k in store.scan_iter(f"{prefix}*") if store.type(k) == b"string"]
    assert not [k for k in strings if b"eraseme" in (store.get(k) or b"")]
    latest = latest_changelog_values(prefix)
    assert latest.get(b"eraseme", b"x") is None, "a tombstone is the customer's last changelog record"
    assert latest.get(b"cookie:ck-er", b"x") is None

    # Dated before the erasure, read after it (a late batch, or forwarded again after a
    # restart): dropped, not the first event of a new profile.
    late = ev("er-late", "page_view", cookie="ck-er") | {"ts": before_the_erasure}
    worker.publish("web", late, ev("er-3", "page_view", cookie="ck-er"))
    fresh = profile_when(store, prefix, "cookie:ck-er", lambda p: p["events"] >= 1)
    assert fresh["events"] == 1 and fresh["customer_id"] is None
    assert fresh["recent"][-1]["event_id"] == "er-3", fresh["recent"]
    assert worker.metric("orchestrator_identity_events_total", outcome="dropped_erased") >= 1


def test_erasure_with_suppression_drops_later_events(worker: WorkerProcess, store: redis.Redis, prefix: str) -> None:
    worker.publish("web", ev("sp-1", "page_view", "suppressme", email="sup@example.com"))
    profile_when(store, prefix, "suppressme", lambda p: p["events"] >= 1)

    record = erase(prefix, "suppressme", "--suppress")
    assert record["suppressed"] is True
    dropped_before = worker.metric("orchestrator_identity_events_total", outcome="dropped_suppressed")
    worker.publish("web", ev("sp-2", "page_view", email="sup@example.com"), ev("sp-3", "page_view", "suppressme"))

    deadline = time.monotonic() + DEADLINE_S
    while worker.metric("orchestrator_identity_events_total", outcome="dropped_suppressed") < dropped_before + 2:
        assert time.monotonic() < deadline, "suppressed events were not dropped"
        time.sleep(0.2)
    assert not store.exists(f"{prefix}customer:suppressme")


def test_erasing_an_unknown_customer_is_confirmed_as_not_found(worker: WorkerProcess, prefix: str) -> None:
    record = erase(prefix, "nobody-at-all")
    assert record["found"] is False


def test_erase_without_a_worker_fails_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "erase", "someone", "--wait", "2"],
        env=cli_env(f"it-noworker-{time.time_ns()}.", BOOTSTRAP, REDIS_URL),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "no worker confirmed" in done.stderr


def test_explain_tells_why_a_merged_customer_got_nothing_by_email(
    worker: WorkerProcess, store: redis.Redis, prefix: str
) -> None:
    opt_out_log_in_and_buy(worker, store, prefix, "explained", "ex", product="sku-9", value=30)
    env = cli_env(prefix, BOOTSTRAP, REDIS_URL, ORCH_IDENTITY_HASH_KEY=HASH_KEY)

    deadline = time.monotonic() + DEADLINE_S
    while True:
        text = subprocess.run(
            [sys.executable, "-m", "orchestrator", "explain", "explained"], env=env, capture_output=True, text=True
        )
        if "purchase" in text.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.3)

    assert text.returncode == 0, text.stderr
    assert "upsell" in text.stdout and "email" in text.stdout
    assert "consent" in text.stdout  # the anonymous decision moved along with the merge
    as_json = subprocess.run(
        [sys.executable, "-m", "orchestrator", "explain", "cookie:ck-ex", "--json"], env=env, capture_output=True
    )
    records = json.loads(as_json.stdout)
    held = [s for r in records for s in r["suppressed"] if s["action"] == "upsell"]
    assert held and held[0]["reason"] == "no_consent"
    on_topic = [
        r
        for r in follow(
            BOOTSTRAP, f"^{prefix}orchestrator[.]decisions$", from_beginning=True, deadline=time.monotonic() + 5
        )
        if r.key == b"explained"
    ]
    assert on_topic, "decisions are published to orchestrator.decisions"


def test_log_topics_holding_customer_data_keep_it_only_for_the_retention(worker: WorkerProcess, prefix: str) -> None:
    """Erasure cannot delete single records from a log; the retention bounds how long they stay."""
    worker.publish("web", ev("ret-1", "search", "retained", props={"query": "tent"}))
    worker.commands(1, customer="retained")
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        topics = [worker.names.customer_events, worker.names.decisions, worker.names.actions("ads")]
        answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    finally:
        admin.close()
    found = answer["topic"]  # kafka-python 3: {"topic": {name: {config: {"value": ...}}}}
    retention = {t: found[t].get("retention.ms", {}).get("value") for t in topics}
    assert retention == {t: str(RETENTION_S * 1000) for t in topics}


def opt_out_log_in_and_buy(
    worker: WorkerProcess, store: redis.Redis, prefix: str, customer: str, tag: str, *, product: str, value: int
) -> None:
    """An anonymous visitor opts out of email, logs in as ``customer``, then buys."""
    cookie = f"ck-{tag}"
    worker.publish("web", ev(f"{tag}-1", "consent", cookie=cookie, props={"channel": "email", "granted": False}))
    worker.publish("app", ev(f"{tag}-2", "identify", customer, cookie=cookie))
    # Different topics race each other: let the merge settle before the purchase.
    profile_when(store, prefix, customer, lambda p: p["consent"].get("email") is False)
    worker.publish("store", ev(f"{tag}-3", "purchase", customer, props={"product": product, "value": value}))


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[str, redis.Redis]]:
    """A Redis of this test's own (the stack's redis-server binary), which it may lock out."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the test's redis-server did not start"
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0", client
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=10)


def worker_waits(worker: WorkerProcess, erasures: float) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while worker.metric("orchestrator_erasures_waiting") != erasures:
        assert time.monotonic() < deadline, f"orchestrator_erasures_waiting never became {erasures}"
        time.sleep(0.2)


def lock_out(store: redis.Redis) -> None:
    """From now on Redis refuses every client but ``store``."""
    store.config_set("requirepass", "let-me-in")
    store.client_kill_filter(_type="normal", skipme=True)


def completes_after_restart(worker: WorkerProcess, store: redis.Redis, prefix: str, who: str, email: str) -> None:
    """Redis lets clients in again; ``worker``, started again, reads the erasure again and completes it."""
    store.config_set("requirepass", "")
    worker.start()
    worker_waits(worker, 0)
    assert gone(store, f"{prefix}customer:{who}", f"{prefix}alias:email:{email}"), worker.log_tail(300)
    assert latest_changelog_values(prefix).get(who.encode(), b"x") is None


def test_an_erasure_while_redis_refuses_writes_waits_for_it_and_then_completes(
    prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The profile is forgotten only after Redis has taken the deletes: killed while waiting,
    the worker would read the erasure again and find the profile."""
    own = f"{prefix}locked."
    with private_redis() as (url, store):
        worker = WorkerProcess(
            prefix=own,
            bootstrap=BOOTSTRAP,
            redis_url=url,
            web_port=free_port(),
            data_dir=tmp_path_factory.mktemp("locked"),
            ORCH_IDENTITY_HASH_KEY=HASH_KEY,
        )
        worker.start()
        try:
            worker.publish("app", ev("lk-1", "identify", "locked", email="locked@example.com"))
            profile_when(store, own, "locked", lambda p: p["events"] >= 1)
            lock_out(store)

            record = erase(own, "locked")  # the audit record leaves at once; the profile waits

            assert record["found"] is True
            worker_waits(worker, 1)
            assert store.exists(f"{own}customer:locked")
            assert latest_changelog_values(own).get(b"locked") is not None, "forgotten before Redis took the deletes"

            store.config_set("requirepass", "")
            worker_waits(worker, 0)
            assert gone(store, f"{own}customer:locked", f"{own}alias:email:locked@example.com")
            assert latest_changelog_values(own).get(b"locked", b"x") is None
        finally:
            worker.stop()


def test_a_worker_told_to_stop_while_an_erasure_waits_for_redis_stops_and_completes_it_after_its_restart(
    prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGTERM gives the wait up (the worker is not left to be killed at the end of its grace
    period): the profile stays in the changelog and the erasure's offset is not committed, so
    the restarted worker reads the erasure again and completes it once Redis is back."""
    own = f"{prefix}stopped."
    with private_redis() as (url, store):
        worker = WorkerProcess(
            prefix=own, bootstrap=BOOTSTRAP, redis_url=url, web_port=free_port(),
            data_dir=tmp_path_factory.mktemp("stopped"), ORCH_IDENTITY_HASH_KEY=HASH_KEY,
        )  # fmt: skip
        worker.start()
        try:
            worker.publish("app", ev("st-1", "identify", "stopped", email="stopped@example.com"))
            profile_when(store, own, "stopped", lambda p: p["events"] >= 1)
            lock_out(store)
            erase(own, "stopped")
            worker_waits(worker, 1)

            assert worker.stop() == 0, worker.log_tail()  # stopped by itself, not killed
            assert "read again after the restart" in worker.log_tail(400)
            assert latest_changelog_values(own).get(b"stopped") is not None

            completes_after_restart(worker, store, own, "stopped", "stopped@example.com")
        finally:
            worker.stop()


def test_a_rebalance_while_an_erasure_waits_for_redis_restarts_the_worker_and_the_erasure_completes_after(
    prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two workers; the one holding a waiting erasure cannot give up its partitions (Faust waits
    for the record in hand), so when the other leaves, the rebalance watchdog ends it (code 75)
    for its supervisor to restart. Restarted once Redis takes writes again (a worker does not
    start without Redis), it reads the erasure again and completes it."""
    own = f"{prefix}rebalanced."
    env = {"ORCH_IDENTITY_HASH_KEY": HASH_KEY, "ORCH_REBALANCE_STUCK_S": "10"}
    env |= {"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}  # quick rebalances
    with private_redis() as (url, store):
        workers = [
            WorkerProcess(
                prefix=own, bootstrap=BOOTSTRAP, redis_url=url, web_port=free_port(),
                data_dir=tmp_path_factory.mktemp(name), **env,
            )
            for name in ("first", "second")
        ]  # fmt: skip
        try:
            for w in workers:
                w.start()
            workers[0].publish("app", ev("rb-1", "identify", "rebalanced", email="rb@example.com"))
            profile_when(store, own, "rebalanced", lambda p: p["events"] >= 1)
            lock_out(store)
            erase(own, "rebalanced")
            holder, other = erasure_holder(workers)

            other.stop()  # a rebalance
            assert holder.wait_exit(60) == EXIT_STUCK, holder.log_tail()
            assert latest_changelog_values(own).get(b"rebalanced") is not None, (
                "forgotten before Redis took the deletes"
            )
            assert store.exists(f"{own}customer:rebalanced")

            completes_after_restart(holder, store, own, "rebalanced", "rb@example.com")
        finally:
            for w in workers:
                w.stop()


def erasure_holder(workers: list[WorkerProcess]) -> tuple[WorkerProcess, WorkerProcess]:
    """The worker whose erasure waits, and the other one."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        waiting = [w.metric("orchestrator_erasures_waiting") for w in workers]
        if 1 in waiting:
            i = waiting.index(1)
            return workers[i], workers[1 - i]
        assert time.monotonic() < deadline, "no worker's erasure waits for Redis"
        time.sleep(0.2)
