"""Waits wait for every worker's ingest, not only their own worker's (real Redis, real worker).

A customer's events keyed other than by customer id may be read by another worker. While
that worker reads a backlog, a wait must not fire: a purchase in the backlog could cancel
it. Workers share their inbound clocks in Redis (agents.group_clock).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from agents.group_clock import FORGET_S, PAUSE_HOLD_S, STALE_S, GroupClock, clocks_key, entry
from tests.integration.conftest import REDIS_URL, running_worker
from tests.integration.harness import WorkerProcess, event

NUDGE = """id: nudge
version: 1
description: Viewed - a nudge two seconds later
trigger: {event: product_view}
steps:
  - wait: 2s
  - action: {channel: email, action: nudge}
"""


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    connection.close()


def test_workers_see_each_other_s_clocks_and_forget_the_stale_and_the_gone(prefix: str, client: redis.Redis) -> None:
    async def scenario() -> list[float]:
        ahead = GroupClock(REDIS_URL, prefix + "clocks.", "ahead:1")
        behind = GroupClock(REDIS_URL, prefix + "clocks.", "behind:1")
        wall = time.time()
        try:
            seen = [await behind.clock(wall - 45, wall)]  # publishes: 45 s behind
            seen.append(await ahead.clock(wall, wall))  # held back by it
            seen.append(await behind.clock(wall - 40, wall))  # its own old entry holds nothing
            seen.append(await ahead.clock(wall, wall + STALE_S + 1))  # behind's entry went stale: it holds
            seen.append(await ahead.clock(wall, wall + STALE_S + 2, generation=1))  # until a rebalance since
            seen.append(await ahead.clock(wall, wall + FORGET_S + 1, generation=1))  # and is deleted when long gone
            return seen
        finally:
            await ahead.close()
            await behind.close()

    wall_then = time.time()
    seen = asyncio.run(scenario())
    assert seen[0] == pytest.approx(wall_then - 45, abs=5)
    assert seen[1] == seen[0]
    assert seen[2] == pytest.approx(wall_then - 40, abs=5)
    assert seen[3] == seen[2]
    assert seen[4] > wall_then
    assert client.hkeys(clocks_key(prefix + "clocks.")) == [b"ahead:1"]


def test_a_worker_gone_silent_holds_the_group_until_it_rebalanced_and_one_leaving_holds_no_one(
    prefix: str, client: redis.Redis
) -> None:
    async def scenario() -> list[float]:
        key_prefix = prefix + "silence."
        reader = GroupClock(REDIS_URL, key_prefix, "reader:1", hold_s=60)
        dead = GroupClock(REDIS_URL, key_prefix, "dead:1")
        leaving = GroupClock(REDIS_URL, key_prefix, "leaving:1")
        paused = GroupClock(REDIS_URL, key_prefix, "paused:1")
        wall = time.time()
        try:
            await dead.clock(wall, wall)  # caught up; then killed: it never publishes again
            await leaving.clock(wall - 30, wall)  # behind, then stopped cleanly
            await leaving.leave()
            later = wall + STALE_S + 1
            seen = [await reader.clock(later, later, generation=3)]  # held where dead stopped reading
            seen.append(await reader.clock(later + 1, later + 1, generation=3))
            seen.append(await reader.clock(later + 2, later + 2, generation=4))  # rebalanced without it
            await paused.clock(later + 2, later + 2)
            await paused.paused(later + 3, 1)  # a rebalance began: it reads nothing from now
            seen.append(await reader.clock(later + 5, later + 5, generation=4))
            await paused.paused(later + 4 + PAUSE_HOLD_S, 1)  # a recovery this long holds no more
            seen.append(await reader.clock(later + 5 + PAUSE_HOLD_S, later + 5 + PAUSE_HOLD_S, generation=4))
            return seen
        finally:
            for clock in (reader, dead, leaving, paused):
                await clock.close()

    wall_then = time.time()
    seen = asyncio.run(scenario())
    assert seen[0] == seen[1] == pytest.approx(wall_then, abs=5)
    assert seen[2] == pytest.approx(wall_then + STALE_S + 3, abs=5)
    assert seen[3] == pytest.approx(wall_then + STALE_S + 4, abs=5)
    assert seen[4] == pytest.approx(wall_then + STALE_S + 6 + PAUSE_HOLD_S, abs=5)
    assert b"leaving:1" not in client.hkeys(clocks_key(prefix + "silence."))


def test_without_redis_a_worker_keeps_its_own_clock() -> None:
    async def scenario() -> float:
        lost = GroupClock("redis://127.0.0.1:1/0", "nowhere.", "w:1")
        try:
            return await lost.clock(123.0, 456.0)
        finally:
            await lost.close()

    assert asyncio.run(scenario()) == 123.0


@pytest.fixture
def nudge_worker(prefix: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "nudge.yaml").write_text(NUDGE)
    with running_worker(
        prefix,
        tmp_path / "worker",
        ORCH_RULES="",
        ORCH_TIMER_INTERVAL_S="0.1",
        ORCH_JOURNEYS_DIR=str(tmp_path / "journeys"),
    ) as w:
        yield w


def test_a_wait_does_not_fire_while_another_worker_reads_a_backlog(
    nudge_worker: WorkerProcess, client: redis.Redis
) -> None:
    w = nudge_worker
    key = clocks_key(w.prefix)
    stop = threading.Event()

    def another_worker_two_minutes_behind() -> None:
        while not stop.is_set():
            now = time.time()
            client.hset(key, "other-host:6066", entry(now - 120, now))
            stop.wait(0.3)

    other = threading.Thread(target=another_worker_two_minutes_behind, daemon=True)
    other.start()
    try:
        w.publish("web", event("g-1", "product_view", "gina"))
        deadline = time.monotonic() + 30
        while w.metric("orchestrator_timers_pending") != 1:
            assert time.monotonic() < deadline, "the wait never started"
            time.sleep(0.2)
        time.sleep(4)  # the wait fell due two seconds ago, by the wall clock

        assert w.commands(1, customer="gina", timeout=2) == [], "a wait fired while another worker was behind"
        assert w.metric("orchestrator_timer_held_back_seconds") > 100
    finally:
        stop.set()
        other.join()
    now = time.time()
    client.hset(key, "other-host:6066", entry(now, now))  # it has caught up

    assert [c["action"] for c in w.commands(1, customer="gina", timeout=30)] == ["nudge"]
    assert w.metric("orchestrator_timer_held_back_seconds") < 100
    assert [c["action"] for c in w.commands(2, customer="gina", timeout=3)] == ["nudge"]  # once


def test_a_worker_that_stops_cleanly_deletes_its_clock(prefix: str, tmp_path: Path, client: redis.Redis) -> None:
    key = clocks_key(prefix)
    with running_worker(prefix, tmp_path / "worker", ORCH_RULES="", ORCH_TIMER_INTERVAL_S="0.1") as w:
        mine = f"{socket.gethostname()}:{w.web_port}".encode()  # how a worker names itself
        deadline = time.monotonic() + 30
        while not client.hexists(key, mine):
            assert time.monotonic() < deadline, "the worker never published its clock"
            time.sleep(0.2)
        assert w.stop() == 0
    assert not client.hexists(key, mine), "a worker stopped cleanly still holds the group's clock"
