"""Records after one the stream dropped wait until it is read again (broker tests of changing
groups: test_churn_stream.py, test_rebalance_stream.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import faust
import pytest
from faust.types.tuples import Message
from prometheus_client import REGISTRY

from agents import stream_drops
from agents.stream_drops import DeliveryOrder, order, skip


@dataclass(frozen=True, order=True)
class TP:
    topic: str
    partition: int


CE = TP("orchestrator.customer-events", 2)


@dataclass
class Partition:
    """A partition as the fetch guard and the agent see it, through a :class:`DeliveryOrder`."""

    order: DeliveryOrder = field(default_factory=DeliveryOrder)

    def deliver(self, *offsets: int) -> None:
        for offset in offsets:
            self.order.delivered(CE, offset)

    def taken(self, *offsets: int) -> list[bool]:
        """What the agent does with each record the stream hands it: True, it is processed."""
        return [not self.order.skip(CE, offset) for offset in offsets]

    def rewind(self) -> list[tuple[TP, int]]:
        """The fetch guard's seeks after the batch."""
        due = self.order.rewinds()
        for tp, offset in due:
            self.order.sought(tp, offset)
        return due


def assigned(committed: int | None) -> Partition:
    partition = Partition()
    partition.order.sought_to_committed(CE, committed)
    return partition


def test_records_in_the_order_they_were_delivered_are_all_processed() -> None:
    partition = assigned(10)
    partition.deliver(10, 11, 12)

    assert partition.taken(10, 11, 12) == [True, True, True]
    assert partition.rewind() == []


def test_a_wake_after_a_dropped_purchase_waits_until_the_purchase_is_read_again() -> None:
    """The nudge to a buyer: 21 (the purchase) dropped in a rebalance, 22 (the wake) came on."""
    partition = assigned(20)
    partition.deliver(20, 21, 22, 23)

    assert partition.taken(20, 22, 23) == [True, False, False]
    assert partition.rewind() == [(CE, 21)]
    partition.deliver(21, 22, 23)
    assert partition.taken(21, 22, 23) == [True, True, True]


def test_the_dropped_head_of_a_partition_is_read_first() -> None:
    partition = assigned(10)
    partition.deliver(10, 11, 12)

    assert partition.taken(11, 12) == [False, False]
    assert partition.rewind() == [(CE, 10)]


def test_several_records_dropped_in_a_row_are_read_again_from_the_first() -> None:
    partition = assigned(20)
    partition.deliver(20, 21, 22, 23)

    assert partition.taken(20, 23) == [True, False]
    assert partition.rewind() == [(CE, 21)]


def test_records_delivered_before_the_seek_back_and_still_queued_are_skipped_too() -> None:
    partition = assigned(10)
    partition.deliver(10, 11, 12, 13)
    assert partition.taken(10, 12) == [True, False]
    partition.rewind()
    partition.deliver(11, 12, 13)

    assert partition.taken(13) == [False]  # the first delivery's 13, behind 12 in the stream's queue
    assert partition.taken(11, 12, 13) == [True, True, True]


def test_a_seek_forward_past_what_was_delivered_keeps_the_order() -> None:
    """The fetch guard's seek to records Faust fetched and never delivered: 11, delivered
    before it, still has to reach the agent."""
    partition = assigned(10)
    partition.deliver(10, 11)
    partition.order.sought(CE, 14)
    partition.deliver(14)

    assert partition.taken(10, 14) == [True, False]
    assert partition.rewind() == [(CE, 11)]


def test_a_seek_back_that_stops_short_of_the_dropped_record_is_followed_by_another() -> None:
    partition = assigned(10)
    partition.deliver(10, 11, 12, 13, 14)
    assert partition.taken(10, 12) == [True, False]
    partition.rewind()
    partition.order.sought(CE, 13)  # a later seek in the same batch went further
    partition.deliver(13)

    assert partition.taken(13) == [False]
    assert partition.rewind() == [(CE, 11)]


def test_a_rebalance_forgets_the_order_and_reads_from_the_committed_offset() -> None:
    partition = assigned(10)
    partition.deliver(10, 11, 12)
    assert partition.taken(10, 12) == [True, False]
    partition.order.sought_to_committed(CE, 11)  # before the fetch guard sought back
    partition.deliver(11, 12)

    assert partition.rewind() == []
    assert partition.taken(11, 12) == [True, True]


def test_a_missing_record_the_group_committed_past_was_processed_elsewhere() -> None:
    """The partition went to another worker and came back: waiting for 11 would skip for ever."""
    partition = assigned(10)
    partition.deliver(10, 11, 12)
    assert partition.taken(10, 12) == [True, False]
    partition.order.sought_to_committed(CE, 30)
    partition.deliver(30, 31)

    assert partition.taken(30, 31) == [True, True]


def test_a_record_the_guard_never_delivered_is_processed() -> None:
    """Nothing known of it: the order says nothing, so it goes on as before this workaround."""
    assert Partition().taken(7, 9) == [True, True]


def untaken(partition: Partition, now: float, queued: bool = False, watched: Any = (CE,)) -> list[tuple[TP, int]]:
    """The fetch guard's look, after a batch, for records the stream dropped with none after them."""
    return partition.order.untaken(set(watched), lambda tp: queued, now)


def test_a_dropped_record_no_later_one_follows_is_read_again_once_nothing_is_queued_for_a_second() -> None:
    partition = assigned(10)
    partition.deliver(10, 11, 12)
    assert partition.taken(10) == [True]  # 11 and 12 dropped; nothing comes after them
    assert untaken(partition, 100.0) == []  # first seen so
    assert untaken(partition, 100.5) == []  # not yet a second
    assert untaken(partition, 101.0) == [(CE, 11)]
    assert partition.rewind() == [(CE, 11)]
    partition.deliver(11, 12)
    assert partition.taken(11, 12) == [True, True]
    assert untaken(partition, 105.0) == [] and partition.rewind() == []


def test_records_still_queued_or_taken_meanwhile_or_on_a_partition_given_away_are_not_dropped() -> None:
    partition = assigned(10)
    partition.deliver(10, 11, 12)
    assert untaken(partition, 100.0, queued=True) == []
    assert untaken(partition, 200.0, queued=True) == []  # in the stream's queue, however long
    assert untaken(partition, 201.0) == []  # the queue is empty from now: a second from here
    assert partition.taken(10) == [True]
    assert untaken(partition, 202.0) == []  # the agent took one meanwhile: a second from here
    assert untaken(partition, 202.5, watched=()) == []  # revoked: its next owner reads them
    assert untaken(partition, 203.0) == []  # and back: a second from here
    assert partition.taken(11, 12) == [True, True]
    assert untaken(partition, 210.0) == [] and partition.rewind() == []


def test_records_of_a_topic_whose_agent_does_not_check_them_are_left_alone() -> None:
    partition = assigned(10)
    partition.deliver(10, 11)
    assert untaken(partition, 100.0) == [] and untaken(partition, 110.0) == []
    assert partition.taken(10) == [True]  # from now on its agent is known to check them
    assert untaken(partition, 111.0) == [] and untaken(partition, 112.0) == [(CE, 11)]


def test_a_partition_already_waiting_for_a_dropped_record_is_not_sought_twice() -> None:
    partition = assigned(10)
    partition.deliver(10, 11, 12)
    assert partition.taken(10, 12) == [True, False]  # 11 dropped, found by its successor
    assert untaken(partition, 100.0) == [] and untaken(partition, 102.0) == []
    assert partition.rewind() == [(CE, 11)]


def message(offset: int) -> Message:
    return Message(CE.topic, CE.partition, offset, 0.0, 0, [], b"c", b"", None, generation_id=0)


def test_a_skipped_record_is_never_acknowledged_and_each_drop_is_counted_once() -> None:
    consumer = type("Consumer", (), {})()
    records = [message(offset) for offset in (10, 11, 12, 13)]
    consumer._unacked_messages = set(records)
    labels = {"topic": CE.topic}
    before = REGISTRY.get_sample_value("orchestrator_stream_drops_total", labels) or 0.0
    order(consumer).sought_to_committed(records[0].tp, 10)
    for record in records:
        order(consumer).delivered(record.tp, record.offset)

    assert [skip(consumer, records[i]) for i in (0, 2, 3)] == [False, True, True]
    assert REGISTRY.get_sample_value("orchestrator_stream_drops_total", labels) == before + 1
    assert consumer._unacked_messages == {records[0], records[1]}  # Faust waits for neither skipped one
    assert records[2].acked and records[3].acked  # so the stream does not acknowledge them


def test_faust_s_stream_drops_a_record_unacknowledged_and_goes_on_and_the_agent_skips_what_follows() -> None:
    """What this workaround relies on, with Faust's own stream (no broker: records come from a
    generator, which suspends flow control as a rebalance does while the second is taken)."""
    records = {offset: message(offset) for offset in (10, 11, 12)}

    async def agent() -> tuple[list[tuple[int, bool]], list[int], list[tuple[Any, int]]]:
        app = faust.App("stream-drops", broker="kafka://127.0.0.1:1")  # in this loop; never connected
        app.topics.acking_topics.add(CE.topic)  # as for the topics the agents subscribe to
        consumer = app.consumer
        order(consumer).sought_to_committed(records[10].tp, None)

        async def fetched() -> AsyncIterator[faust.Event]:
            for offset, record in records.items():
                order(consumer).delivered(record.tp, offset)
                (app.flow_control.suspend if offset == 11 else app.flow_control.resume)()
                yield faust.Event(app, record.key, record.value, {}, record)

        seen = []
        async for event in app.stream(fetched()).events():
            seen.append((event.message.offset, not skip(consumer, event.message)))
        consumer._thread.thread_loop.close()  # the stream made the consumer, whose thread never ran
        return seen, list(consumer._acked[records[10].tp]), order(consumer).rewinds()

    seen, acknowledged, rewinds = asyncio.run(agent())
    assert seen == [(10, True), (12, False)]
    assert acknowledged == [10]  # so no commit passes 11 or 12
    assert rewinds == [(records[11].tp, 11)]


def test_faust_s_stream_drops_the_last_record_and_the_guard_finds_it_once_the_queue_is_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same with a real topic channel, its queue filled as Faust's conductor fills it: the
    second and last record is dropped as it leaves the queue; the guard's look after a batch
    sees nothing while it is queued, and asks for a seek back to it once the queue is empty."""
    monkeypatch.setattr(stream_drops, "STALL_SECONDS", 0.0)  # the two looks a second apart are tested above
    records = [message(10), message(11)]
    tp = records[0].tp

    async def agent() -> tuple[list[tuple[Any, int]], list[tuple[Any, int]], list[tuple[Any, int]]]:
        app = faust.App("stream-drops-tail", broker="kafka://127.0.0.1:1")  # never connected
        app.topics.acking_topics.add(CE.topic)
        consumer = app.consumer
        monkeypatch.setattr(consumer, "assignment", lambda: {tp})
        stream = app.stream(app.topic(CE.topic))
        channel = stream.channel
        app.topics._tp_index[tp].add(channel)  # as the conductor does on assignment
        order(consumer).sought_to_committed(tp, 10)
        app.flow_control.resume()  # as the worker does once it is ready
        took_first = asyncio.Event()

        def fetched(record: Message) -> None:
            order(consumer).delivered(tp, record.offset)
            channel.queue.put_nowait(faust.Event(app, record.key, record.value, {}, record))

        async def run() -> None:
            async for event in stream.events():
                assert not skip(consumer, event.message)
                app.flow_control.suspend()  # a rebalance begins while 11 waits in the queue
                took_first.set()

        fetched(records[0])
        task = asyncio.create_task(run())
        await took_first.wait()
        fetched(records[1])
        stream_drops.tail_drops(consumer)
        while_queued = order(consumer).rewinds()
        while not channel.queue.empty():
            await asyncio.sleep(0.01)  # the stream takes 11 and drops it
        await asyncio.sleep(0.01)
        stream_drops.tail_drops(consumer)
        dropped = order(consumer).rewinds()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        consumer._thread.thread_loop.close()
        return while_queued, dropped, list(consumer._acked[tp])

    while_queued, dropped, acknowledged = asyncio.run(agent())
    assert while_queued == []
    assert dropped == [(tp, 11)]
    assert 11 not in acknowledged
