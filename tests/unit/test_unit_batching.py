"""The Redis writers' batching: the pause between failed flushes, and how far flushes got."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from orchestrator.batching import MOST_S, Backoff, Flushes, flush_forever


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

    async def flush_once(self) -> bool:
        batch, self.staged = self.staged, []
        await asyncio.sleep(0)
        for item in self.while_writing:
            self.stage(item)
        self.while_writing = []
        if self.down:
            self.staged = batch + self.staged
            return False
        self.stored += batch
        return True


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
    write: Callable[[], Awaitable[bool]], first_pause_s: float = 0.001, after_s: float = 0.0
) -> tuple[bool, bool, int]:
    """Run the flush loop over ``write``, cancel it ``after_s`` into the first flush; say
    whether it stopped (within 2 s), whether it closed, and how many flushes began."""
    in_flush, closed, flushes = asyncio.Event(), asyncio.Event(), []

    async def flush() -> bool:
        flushes.append(1)
        in_flush.set()
        return await write()

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

    async def write() -> bool:
        batch = list(staged)
        staged.clear()
        await asyncio.sleep(0.05)  # the pipeline on its way to Redis
        stored.extend(batch)
        return True

    assert asyncio.run(stop_during_a_flush(write)) == (True, True, 2)
    assert stored == ["a"]


def test_the_flush_loop_stops_when_a_library_swallowed_the_cancellation() -> None:
    """Python 3.11's ``wait_for``, which redis-py sends each command through, drops a
    cancellation that arrives as the command completes: the loop stopped only on a
    CancelledError and flushed forever (a CI run hung on it)."""

    async def write() -> bool:
        # what 3.11's wait_for does when its call finishes as the cancel arrives:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)
        return True

    assert asyncio.run(stop_during_a_flush(write)) == (True, True, 2)  # the flush in flight, then the last one


def test_a_stop_during_the_pause_after_a_failed_flush_flushes_once_more_at_once() -> None:
    """While Redis is down the loop pauses between tries; a worker told to stop must not sit
    out the pause (up to 5 s) before its last try."""

    async def refused() -> bool:
        return False

    assert asyncio.run(stop_during_a_flush(refused, first_pause_s=60, after_s=0.05)) == (True, True, 2)


def test_a_caller_cancelled_during_its_flush_loses_nothing_and_is_told_no_lie() -> None:
    """An offset commit or an erasure waiting on ``written()`` may be cancelled as the worker
    stops. Cut short, the flush dropped the batch it had taken, and the next ``written()``
    then said yes for the lost changes: an erasure's deletes could be lost for good."""

    async def scenario() -> tuple[bool, list[str]]:
        staged, stored, taken = ["delete c-1"], [], asyncio.Event()

        async def flush_once() -> bool:
            batch = list(staged)
            staged.clear()
            taken.set()
            await asyncio.sleep(0.05)  # the pipeline on its way to Redis
            stored.extend(batch)
            return True

        flushes = Flushes(flush_once)
        flushes.staged()
        caller = asyncio.create_task(flushes.written())
        await taken.wait()
        caller.cancel()
        return await flushes.written(), stored

    assert asyncio.run(scenario()) == (True, ["delete c-1"])
