"""The Redis writers' batching: the pause between failed flushes, and how far flushes got."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable

import pytest

from orchestrator.batching import MOST_S, Backoff, Flushes, FlushFailed, all_written, flush_forever
from orchestrator.core.state import CustomerState
from orchestrator.decisionlog import DecisionLogWriter
from orchestrator.readmodel import ReadModelWriter

CLOSED = "redis://127.0.0.1:1/0"  # nothing listens there: every command is refused, as when Redis is down


def test_pauses_double_up_to_the_most_and_start_over_after_a_success() -> None:
    backoff = Backoff(first_s=0.5)
    assert [backoff.next_pause() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, MOST_S, MOST_S]
    backoff.succeeded()
    assert backoff.next_pause() == 0.5


class Store:
    """A writer's flush that takes what is staged, and fails while ``down``."""

    def __init__(self) -> None:
        self.staged: list[str] = []
        self.stored: list[str] = []
        self.down = False
        self.flushes = Flushes(self.flush_once)
        self.while_writing: list[str] = []  # staged while a flush is in flight

    def stage(self, item: str) -> None:
        self.staged.append(item)
        self.flushes.staged()

    async def flush_once(self) -> None:
        batch, self.staged = self.staged, []
        await asyncio.sleep(0)
        for item in self.while_writing:
            self.stage(item)
        self.while_writing = []
        if self.down:
            self.staged = batch + self.staged
            raise FlushFailed(f"store flush of {len(batch)} items failed")
        self.stored += batch


def test_written_says_yes_for_what_was_staged_before_while_later_changes_are_still_on_their_way() -> None:
    async def scenario() -> tuple[bool, list[str], list[str]]:
        store = Store()
        store.stage("a")
        store.while_writing = ["b"]  # staged as the caller waits: not its business
        return await store.flushes.written(), store.stored, store.staged

    assert asyncio.run(scenario()) == (True, ["a"], ["b"])


def test_written_says_no_while_the_flush_fails_and_yes_once_a_later_flush_writes_it() -> None:
    async def scenario() -> list[bool]:
        store = Store()
        store.stage("a")
        store.down = True
        answers = [await store.flushes.written()]
        store.stage("b")
        answers.append(await store.flushes.written())
        store.down = False
        answers.append(await store.flushes.written())
        return [*answers, store.stored == ["a", "b"]]

    assert asyncio.run(scenario()) == [False, False, True, True]


def test_a_caller_waiting_behind_a_flush_in_flight_gets_its_own_flush() -> None:
    async def scenario() -> tuple[bool, list[str]]:
        store = Store()
        store.stage("a")
        in_flight = asyncio.create_task(store.flushes.flush())
        await asyncio.sleep(0)  # the background flush has taken "a" and waits on Redis
        store.stage("b")
        answer = await store.flushes.written()
        await in_flight
        return answer, store.stored

    assert asyncio.run(scenario()) == (True, ["a", "b"])


async def stop_during_a_flush(
    write: Callable[[], Awaitable[None]], first_pause_s: float = 0.001, after_s: float = 0.0
) -> tuple[bool, bool, int]:
    """Run the flush loop over ``write``, cancel it ``after_s`` into the first flush; say
    whether it stopped (within 2 s), whether it closed, and how many flushes began."""
    in_flush, closed, flushes = asyncio.Event(), asyncio.Event(), []

    async def flush() -> None:
        flushes.append(1)
        in_flush.set()
        await write()

    async def close() -> None:
        closed.set()

    loop = asyncio.create_task(flush_forever(Flushes(flush), asyncio.Event(), 0.01, close, Backoff(first_pause_s)))
    await in_flush.wait()
    await asyncio.sleep(after_s)
    loop.cancel()
    done, _ = await asyncio.wait([loop], timeout=2)
    if not done:
        loop.cancel()
    return bool(done) and loop.cancelled(), closed.is_set(), len(flushes)


def test_a_stop_during_a_flush_loses_nothing_of_the_batch_in_flight() -> None:
    """The flush has taken its batch off the staged changes as it sends it: cut short by the
    worker's stop, the batch was gone (a CI run lost a record so)."""
    staged, stored = ["a"], []

    async def write() -> None:
        batch = list(staged)
        staged.clear()
        await asyncio.sleep(0.05)  # the pipeline on its way to Redis
        stored.extend(batch)

    assert asyncio.run(stop_during_a_flush(write)) == (True, True, 2)
    assert stored == ["a"]


def test_the_flush_loop_stops_when_a_library_swallowed_the_cancellation() -> None:
    """Python 3.11's ``wait_for``, which redis-py sends each command through, drops a
    cancellation that arrives as the command completes: the loop stopped only on a
    CancelledError and flushed forever (a CI run hung on it)."""

    async def write() -> None:
        # what 3.11's wait_for does when its call finishes as the cancel arrives:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)

    assert asyncio.run(stop_during_a_flush(write)) == (True, True, 2)  # the flush in flight, then the last one


def test_a_stop_during_the_pause_after_a_failed_flush_flushes_once_more_at_once() -> None:
    """While Redis is down the loop pauses between tries; a worker told to stop must not sit
    out the pause (up to 5 s) before its last try."""

    async def refused() -> None:
        raise FlushFailed("refused")

    assert asyncio.run(stop_during_a_flush(refused, first_pause_s=60, after_s=0.05)) == (True, True, 2)


def test_a_caller_cancelled_during_its_flush_loses_nothing_and_is_told_no_lie() -> None:
    """An offset commit or an erasure waiting on ``written()`` may be cancelled as the worker
    stops. Cut short, the flush dropped the batch it had taken, and the next ``written()``
    then said yes for the lost changes: an erasure's deletes could be lost for good."""

    async def scenario() -> tuple[bool, list[str]]:
        staged, stored, taken = ["delete c-1"], [], asyncio.Event()

        async def flush_once() -> None:
            batch = list(staged)
            staged.clear()
            taken.set()
            await asyncio.sleep(0.05)  # the pipeline on its way to Redis
            stored.extend(batch)

        flushes = Flushes(flush_once)
        flushes.staged()
        caller = asyncio.create_task(flushes.written())
        await taken.wait()
        caller.cancel()
        return await flushes.written(), stored

    assert asyncio.run(scenario()) == (True, ["delete c-1"])


def test_a_redis_outage_is_warned_of_by_each_flush_loop_s_tries_not_by_every_caller_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Offset commits (and erasures) flush through ``written()`` about once a second; each of their
    failed flushes warned too, so a worker logged two warnings a second for the whole outage. Now
    only the flush loops warn, their tries spaced further and further apart."""

    async def scenario() -> list[bool]:
        profiles = ReadModelWriter(CLOSED, "t.", interval_s=0.01)  # pauses of 0.1, 0.2, 0.4, 0.8 s
        decisions = DecisionLogWriter(CLOSED, "t.", interval_s=0.01)
        profiles.stage(CustomerState(key="c-1"), 0.0, 0)
        decisions.stage("c-1", {"n": 1})
        loops = [asyncio.create_task(profiles.run()), asyncio.create_task(decisions.run())]
        written, answers = all_written(profiles, decisions), []
        for _ in range(30):  # a caller trying every 50 ms: twenty times as often as a commit
            answers.append(await written())
            await asyncio.sleep(0.05)
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        return answers

    with caplog.at_level(logging.DEBUG):
        answers = asyncio.run(scenario())
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    profiles_warned = [m for m in warned if m.startswith("read model flush of 1 profiles failed")]
    decisions_warned = [m for m in warned if m.startswith("decision log flush of 1 customers failed")]
    assert answers == [False] * 30
    assert len(warned) == len(profiles_warned) + len(decisions_warned)
    for lines in (profiles_warned, decisions_warned):
        # tries at about 0.01, 0.12, 0.33, 0.74 s (and 1.55 s), then the last flush as the loop stops
        assert 3 <= len(lines) <= 6, lines
        pauses = [float(p) for line in lines for p in re.findall(r"trying again in ([0-9.]+) s", line)]
        assert pauses == sorted(pauses) and pauses[:3] == [0.1, 0.2, 0.4]
        assert lines[-1].endswith("the writer stops without it")
