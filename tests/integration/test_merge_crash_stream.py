"""Merges through a crash, on the real broker with a real worker process.

Anonymous visitors (a cookie each) view a product, which starts a wait in a journey,
then log in: each cookie's profile merges into a known customer's, the wait with it.
The worker is SIGKILLed while those merges are under way, with offsets committed only
once a minute, so the restarted worker reads the views, the logins and the hand-overs
between partitions again. Afterwards each customer's profile counts every event once,
the cookie's profile is gone, a later visit by the cookie lands on the customer, and
each wait fires once, for the customer, with what the anonymous visit put in it.
Before the fix in ``identity.graph._merged_again`` a merge read again after the kill left
the cookie's profile in Redis for good.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.conftest import REDIS_URL, running_worker
from tests.integration.harness import WorkerProcess
from tests.integration.test_identity_stream import ev, gone, profile_when
from tests.integration.test_journeys_stream import publish
from tests.integration.test_timers_crash_stream import WORKER_ENV, assert_each_fired_once, settled_commands
from tests.integration.test_timers_crash_stream import own_prefix as own_prefix  # the fixture

PEOPLE = 16  # most merges cross partitions (4), and the kill falls among them
WAIT_S = 8.0


@pytest.fixture
def store() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def browse(i: int) -> list[dict[str, Any]]:
    return [
        ev(f"view-{i}", "product_view", cookie=f"ck-{i}", props={"product": f"sku-customer-{i}"}),
        ev(f"page-{i}", "page_view", cookie=f"ck-{i}"),
    ]


def merged_when_all(store: redis.Redis, prefix: str, events: int) -> dict[str, dict[str, Any]]:
    return {
        f"customer-{i}": profile_when(store, prefix, f"customer-{i}", lambda p: p["events"] >= events)
        for i in range(PEOPLE)
    }


def log_in_while_killed(w: WorkerProcess) -> None:
    """Each cookie logs in, 0.1 s apart; the worker is killed once half of them have merged."""
    logins = [ev(f"login-{i}", "identify", f"customer-{i}", cookie=f"ck-{i}") for i in range(PEOPLE)]
    merged = 0.0
    while logins and merged < PEOPLE // 2:
        w.publish("web", logins.pop(0))
        time.sleep(0.1)
        merged = w.metric("orchestrator_identity_events_total", outcome="merged_in")
    w.stop(signal.SIGKILL)
    assert 0 < merged < PEOPLE, f"{merged:.0f} merges were done at the kill: it fell around none"
    w.start()
    w.publish("web", *logins)


def test_a_worker_killed_among_merges_counts_each_event_once_and_fires_each_wait_once(
    own_prefix: str, tmp_path: Path, store: redis.Redis
) -> None:
    env = WORKER_ENV | {"BROKER_COMMIT_INTERVAL": "60"}  # the restarted worker reads it all again
    with running_worker(own_prefix, tmp_path / "worker", **env) as w:
        publish(w, tmp_path / "journeys", 1, f"{WAIT_S:.0f}s")
        entered: dict[str, float] = {}
        for i in range(PEOPLE):
            entered[f"customer-{i}"] = time.time()
            w.publish("web", *browse(i))
        log_in_while_killed(w)
        w.publish("web", *[ev(f"back-{i}", "page_view", cookie=f"ck-{i}") for i in range(PEOPLE)])
        profiles = merged_when_all(store, own_prefix, 4)
        commands = settled_commands(w, PEOPLE, max(entered.values()) + WAIT_S)

    for customer, profile in profiles.items():
        assert profile["events"] == 4, f"{customer}: {profile['type_counts']}"
        assert profile["type_counts"] == {"product_view": 1, "page_view": 2, "identify": 1}, customer
    for i in range(PEOPLE):
        cookie = f"cookie:ck-{i}"
        assert gone(store, f"{own_prefix}customer:{cookie}", f"{own_prefix}decisions:{cookie}"), f"{cookie} in Redis"
        assert store.llen(f"{own_prefix}decisions:customer-{i}") >= 1, f"customer-{i} has no decisions"
    assert_each_fired_once(commands, entered, WAIT_S, copies=False)
