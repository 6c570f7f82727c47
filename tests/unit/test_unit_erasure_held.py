"""An erasure forgets the profile last: killed before, the worker erases it again in full."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaTimeoutError
from stories import JOURNEYS_ONLY, T0, Due, identified_event

from agents.decide import decide_step
from agents.erasure import Deliveries, HeldWrites, settle
from orchestrator import metrics
from orchestrator.batching import all_written
from orchestrator.identity import records
from orchestrator.identity.graph import ERASE, ERASE_KEY, Context

CTX = Context(JOURNEYS_ONLY, None)


def test_held_writes_are_read_back_and_reach_the_table_only_at_commit() -> None:
    table = {b"a": b"1", b"b": b"2"}
    held = HeldWrites(table)
    held[b"a"] = b"3"
    del held[b"b"]
    del held[b"never"]

    assert (held.get(b"a"), held.get(b"b"), held.get(b"c", b"x")) == (b"3", None, b"x")
    assert table == {b"a": b"1", b"b": b"2"}
    held.commit()
    assert table == {b"a": b"3"}


def profile_with_a_pointer() -> dict[bytes, bytes]:
    """c-1 logged in with an email: the profile, and the email's key pointing at it."""
    table: dict[bytes, bytes] = {}
    queue = [identified_event("i-1", "identify", 0, "c-1", email="a@x")]
    for place, event in enumerate(queue):
        step = decide_step(table, Due(), event.customer_key.encode(), event, event.ts, CTX, f"0@{place}")
        queue.extend(step.effects.sends)
    return table


def test_an_erasure_killed_before_its_commit_is_carried_out_in_full_when_read_again() -> None:
    table = profile_with_a_pointer()
    erase = identified_event("x-1", ERASE, 10, "c-1")
    held = HeldWrites(table)
    first = decide_step(held, Due(), b"c-1", erase, T0 + 10, CTX, "0@9")
    assert isinstance(records.decode(held.get(b"c-1")), records.Missing)
    # killed here: the pointer erasures and the audit record died in the producer, uncommitted
    assert isinstance(records.decode(table[b"c-1"]), records.Profile)  # the table never forgot it

    again = decide_step(table, Due(), b"c-1", erase, T0 + 11, CTX, "0@9")

    assert again.effects.audit is not None and again.effects.audit["found"] is True
    assert [e.type for e in again.effects.sends] == [e.type for e in first.effects.sends] == [ERASE_KEY]
    assert again.effects.forget == ["c-1"]


def test_a_login_forwarded_again_after_the_erasure_it_came_before_does_not_bring_the_customer_back() -> None:
    """The broker test's race: the worker stopped while the erasure waited for Redis, so no
    offset was committed, ingest's included; restarted, it completed the erasure, and then
    ingest forwarded the login again, which used to start the erased profile anew."""
    table = profile_with_a_pointer()
    erase = identified_event("x-1", ERASE, 10, "c-1")
    held = HeldWrites(table)
    decide_step(held, Due(), b"c-1", erase, T0 + 11, CTX, "0@9")
    held.commit()
    login = identified_event("i-1", "identify", 0, "c-1", email="a@x")

    again = decide_step(table, Due(), b"c-1", login, T0 + 12, CTX, "0@10")

    assert again.effects.counted == "dropped_erased" and not again.effects.sends
    assert set(table) == {records.erased_key_bytes(b"c-1"), b"email:a@x"}  # its erasure is on its way


# -- settle: nothing is forgotten before the erasure's messages and deletes have arrived ---------


class Writer:
    """A Redis writer whose deletes go through after ``failures`` tries."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.tries = 0

    async def written(self) -> bool:
        self.tries += 1
        return self.tries > self.failures


def delivered(loop: asyncio.AbstractEventLoop, error: Exception | None = None) -> asyncio.Future[Any]:
    """A producer's future for one message, delivered (or failed with ``error``)."""
    future: asyncio.Future[Any] = loop.create_future()
    if error is None:
        future.set_result("metadata")
    else:
        future.set_exception(error)
    return future


def waiting() -> float:
    return metrics.ERASURES_WAITING._value.get()


def test_an_erasure_whose_messages_arrived_and_deletes_were_written_settles_at_once() -> None:
    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        writer = Writer()
        await settle([delivered(loop), delivered(loop)], nothing_to_send, writer.written, retry_s=0.01)
        return writer.tries

    assert asyncio.run(scenario()) == 1


def test_a_message_that_failed_is_sent_again_before_the_erasure_settles() -> None:
    sent_again: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def send_again() -> Deliveries:
            sent_again.append("erase_key")
            return [delivered(loop)]

        failed = delivered(loop, KafkaTimeoutError("batch expired"))
        await settle([delivered(loop), failed], send_again, Writer().written, retry_s=0.01)

    asyncio.run(scenario())
    assert sent_again == ["erase_key"]


def test_an_erasure_waits_for_a_message_still_in_the_producer_and_says_so() -> None:
    seen: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        slow: asyncio.Future[Any] = loop.create_future()
        loop.call_later(0.05, slow.set_result, "metadata")
        loop.call_later(0.03, lambda: seen.append(waiting()))
        await settle([slow], nothing_to_send, Writer().written, retry_s=0.01)

    before = waiting()
    asyncio.run(scenario())
    assert seen == [before + 1] and waiting() == before


def test_an_erasure_waits_until_redis_has_taken_its_deletes() -> None:
    writer = Writer(failures=2)  # Redis down for two tries

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        await settle([delivered(loop)], nothing_to_send, all_written(Writer(), writer), retry_s=0.01)

    asyncio.run(scenario())
    assert writer.tries == 3


def test_a_worker_told_to_stop_gives_up_the_wait_and_says_the_erasure_did_not_settle() -> None:
    writer = Writer(failures=10**9)  # Redis down for good
    stop_after = iter([False, False, True])

    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        return await settle([delivered(loop)], nothing_to_send, writer.written, lambda: next(stop_after), retry_s=0.01)

    before = waiting()
    assert asyncio.run(scenario()) is False
    assert writer.tries == 2 and waiting() == before


def test_an_erasure_that_settles_says_so() -> None:
    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        return await settle([delivered(loop)], nothing_to_send, Writer().written, lambda: False, retry_s=0.01)

    assert asyncio.run(scenario()) is True


async def nothing_to_send() -> Deliveries:
    raise AssertionError("nothing failed: nothing is sent again")
