"""The outbox without a broker: a record read again after a crash sends what it sent before.

The decide agent's own functions run over an in-memory table. A crash is what the
broker test ``test_a_worker_killed_right_after_a_wait_fired_still_sends_its_command``
makes happen: the table holds the decision, the producer lost its commands, and the
same record (the same partition and offset) is read again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from stories import JOURNEYS_ONLY, T0, Due, identified_event

from agents import outbox
from agents.decide import Step, apply_in_event_time, decide_step, not_sent_before
from agents.handover import Doubt
from orchestrator.core.commands import Command
from orchestrator.core.decide import WAKE
from orchestrator.core.event import Event
from orchestrator.identity import records
from orchestrator.identity.graph import MERGE_CONFIRMED, MERGE_IN, Context, Effects
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import compile_text
from orchestrator.kafka.delivered import Unfinished

NUDGE = compile_text(
    "id: nudge\nversion: 1\ntrigger: {event: product_view}\nsteps:\n"
    "  - action: {channel: web, action: welcome}\n"
    "  - wait: 1h\n"
    "  - action: {channel: email, action: nudge}\n",
    "nudge.yaml",
)
CTX = Context(JOURNEYS_ONLY, Engine(Catalogue.of([NUDGE])))
KEY = b"c-1"


def viewed(event_id: str = "e-1", at: float = 0.0) -> Event:
    return Event(event_id, "product_view", T0 + at, "c-1", "web", T0 + at, customer_id="c-1")


def wake(at: float) -> Event:
    return Event(f"wake:{T0 + at:.3f}", WAKE, T0 + at, "c-1", "", T0 + at)


def step(table: dict[bytes, bytes], event: Event, where: str, at: float | None = None) -> Step:
    now = event.ts if at is None else T0 + at
    return decide_step(table, Due(), KEY, event, now, CTX, where)


def commands(step: Step) -> list[dict[str, Any]]:
    decision = step.effects.decision
    assert decision is not None and not decision.duplicate
    return [c.to_wire() for c in decision.commands]


def owed_commands(step: Step) -> list[dict[str, Any]]:
    return [wire for sent in step.owed for wire in sent.commands]


def test_an_event_read_again_from_its_place_sends_its_commands_again() -> None:
    table: dict[bytes, bytes] = {}
    first = step(table, viewed(), "0@10")
    assert [c["action"] for c in commands(first)] == ["welcome"]

    again = step(table, viewed(), "0@10")  # the worker died before the producer sent them

    assert again.effects.counted == "duplicate"
    assert owed_commands(again) == commands(first)  # the same action ids: channels drop a copy


def test_the_same_event_from_a_channel_again_is_a_silent_duplicate() -> None:
    table: dict[bytes, bytes] = {}
    step(table, viewed(), "0@10")

    repeat = step(table, viewed(), "0@11")  # sent twice by the channel: a record of its own

    assert repeat.effects.counted == "duplicate" and repeat.owed == ()


def test_a_wake_read_again_after_its_wait_fired_sends_the_wait_s_command_again() -> None:
    table: dict[bytes, bytes] = {}
    step(table, viewed(), "0@10")
    fired = step(table, wake(3600), "0@11")
    assert [c["action"] for c in commands(fired)] == ["nudge"]

    again = step(table, wake(3600), "0@11", at=3601)

    assert again.effects.counted == "stale_wake"
    assert owed_commands(again) == commands(fired)


def test_a_later_record_of_the_customer_keeps_what_earlier_ones_are_owed() -> None:
    """Several records of one customer between two commits: each is owed its own sends."""
    table: dict[bytes, bytes] = {}
    first = step(table, viewed(), "0@10")
    fired = step(table, wake(3600), "0@11")
    step(table, viewed("e-2", 3700), "0@12")  # sends nothing: the customer is in the journey

    assert owed_commands(step(table, viewed(), "0@10", at=3800)) == commands(first)
    assert owed_commands(step(table, wake(3600), "0@11", at=3800)) == commands(fired)


def test_waits_fired_before_an_event_in_event_time_are_owed_with_it() -> None:
    """Event time fires the overdue wait, then decides the event: both under the event's place."""
    table: dict[bytes, bytes] = {}
    step(table, viewed(), "0@10")
    first: list[Step] = []
    apply_in_event_time(table, Due(), KEY, viewed("e-2", 7200), T0 + 7200, CTX, first, "0@11")
    sent = [c for s in first if s.effects.decision for c in commands(s)]
    assert [c["action"] for c in sent] == ["nudge"]

    again: list[Step] = []
    apply_in_event_time(table, Due(), KEY, viewed("e-2", 7200), T0 + 7200, CTX, again, "0@11")

    assert [s.effects.counted for s in again] == ["duplicate"]
    assert owed_commands(again[0]) == sent


def test_without_a_place_no_outbox_is_kept() -> None:
    """Replay and the tests that run the agent's functions keep none: nothing can be redelivered."""
    table: dict[bytes, bytes] = {}
    decide_step(table, Due(), KEY, viewed(), T0, CTX, None)

    stored = records.decode(table[KEY])
    assert isinstance(stored, records.Profile) and stored.outbox == ()
    assert table[KEY] == stored.state.to_bytes()  # stored exactly as before outboxes


def test_the_outbox_is_bounded_and_forgets_old_entries() -> None:
    table: dict[bytes, bytes] = {}
    step(table, viewed(), "0@10")
    profile = records.decode(table[KEY])
    assert isinstance(profile, records.Profile)
    full = records.Profile(profile.state, tuple(records.Sent(f"0@{i}", 1000.0 + i) for i in range(outbox.MOST)))
    effects = Effects(record=records.Profile(profile.state), sends=[viewed("link")])

    outbox.keep(full, effects, "0@99", wall=1000.0 + outbox.MOST)
    assert isinstance(effects.record, records.Profile)
    assert [s.place for s in effects.record.outbox] == [f"0@{i}" for i in range(1, outbox.MOST)] + ["0@99"]

    later = Effects(record=records.Profile(profile.state))
    outbox.keep(effects.record, later, "0@100", wall=1001.5 + outbox.KEEP_S)  # 0@1 is older than KEEP_S
    assert isinstance(later.record, records.Profile)
    assert [s.place for s in later.record.outbox] == [f"0@{i}" for i in range(2, outbox.MOST)] + ["0@99"]


def test_a_profile_with_an_outbox_survives_the_table_s_bytes() -> None:
    table: dict[bytes, bytes] = {}
    first = step(table, viewed(), "0@10")
    stored = records.decode(table[KEY])

    assert isinstance(stored, records.Profile) and isinstance(first.effects.record, records.Profile)
    assert stored.state == first.effects.record.state
    assert stored.outbox == first.effects.record.outbox
    assert [c["action"] for s in stored.outbox for c in s.commands] == ["welcome"]
    assert records.OUTBOX not in stored.state.to_map()  # the read model and the API never see it


# -- a profile merged into another: its outbox stays with the pointer it becomes -------------------


class Log:
    """The customer-events topic of one partition, in memory: records at offsets, the sends
    of each decision appended as new records, as the agent's producer would."""

    def __init__(self) -> None:
        self.table: dict[bytes, bytes] = {}
        self.records: list[Event] = []
        self.done = 0

    def publish(self, event: Event) -> None:
        self.records.append(event)

    def decide(self, offset: int) -> Step:
        event = self.records[offset]
        key = event.customer_key.encode()
        return decide_step(self.table, Due(), key, event, event.ts, CTX, f"0@{offset}")

    def drain(self, *, lose: str | None = None) -> list[Step]:
        """Decide every record not decided yet; the sends of a decision counted ``lose`` die
        in the producer (the worker is killed right after its table write)."""
        steps = []
        while self.done < len(self.records):
            steps.append(self.decide(self.done))
            self.done += 1
            if steps[-1].effects.counted != lose:
                for follow_up in steps[-1].effects.sends:
                    self.publish(follow_up)
        return steps

    def record(self, key: str) -> records.Record:
        return records.decode(self.table.get(key.encode()))


def identified(event_id: str, type: str, at: float, customer_id: str, **ids: str) -> Event:
    props = {"value": 10.0} if type == "purchase" else {}
    return identified_event(event_id, type, at, customer_id, props, **ids)


def two_profiles_then_a_login(log: Log) -> None:
    log.publish(identified("p-1", "purchase", 0, "c-old", email="a@x"))
    log.publish(identified("p-2", "purchase", 50, "c-new"))
    log.drain()
    log.publish(identified("v-1", "product_view", 55, "c-new"))  # the loser's last command: welcome
    log.publish(identified("i-1", "identify", 60, "c-new", email="a@x"))


def test_a_merge_whose_hand_over_died_in_the_producer_hands_over_again() -> None:
    log = Log()
    two_profiles_then_a_login(log)
    steps = log.drain(lose="merged_out")  # c-new became a pointer; its state never left
    [merged_out] = [s for s in steps if s.effects.counted == "merged_out"]
    assert log.record("c-new") == records.Forward("c-old", log.record("c-new").outbox)  # type: ignore[union-attr]

    again = log.decide(log.records.index(merged_out.event))  # the same record, read again

    assert [sent["type"] for owed in again.owed for sent in owed.sends] == [MERGE_IN]
    for owed in again.owed:
        log.records.extend(Event.from_wire(wire) for wire in owed.sends)
    log.drain()
    survivor = log.record("c-old")
    assert isinstance(survivor, records.Profile)
    assert survivor.state.purchases == 2 and survivor.state.revenue == 20.0


def test_a_hand_over_sent_twice_is_merged_once() -> None:
    log = Log()
    two_profiles_then_a_login(log)
    steps = log.drain()
    [hand_over] = [s.event for s in steps if s.event.type == MERGE_IN]
    log.publish(hand_over)  # the merge read again after a crash, and its hand-over sent again

    again = log.drain()

    assert [s.effects.counted for s in again] == ["duplicate", None]  # and the pointer hears it again
    survivor = log.record("c-old")
    assert isinstance(survivor, records.Profile) and survivor.state.purchases == 2


def test_a_record_decided_just_before_its_profile_merged_away_is_owed_at_the_pointer() -> None:
    log = Log()
    two_profiles_then_a_login(log)
    steps = log.drain(lose="merged_in")  # killed before the survivor's word reached the pointer
    [viewed_step] = [s for s in steps if s.event.event_id == "v-1"]
    assert isinstance(log.record("c-new"), records.Forward)

    again = log.decide(log.records.index(viewed_step.event))  # read again at the pointer

    assert again.effects.counted == "forwarded"
    assert owed_commands(again) == commands(viewed_step)  # the welcome, with its action id


def test_once_the_survivor_has_the_state_the_pointer_keeps_no_copy_of_it() -> None:
    """Logins merge profiles all day: their pointers must not keep copies of states for ever."""
    log = Log()
    two_profiles_then_a_login(log)
    counted = [s.effects.counted for s in log.drain()]

    assert counted.index("merged_out") < counted.index("merged_in") < counted.index(MERGE_CONFIRMED)
    pointer = log.record("c-new")
    assert isinstance(pointer, records.Forward) and pointer.target == "c-old"
    assert [sent.sends for sent in pointer.outbox] == [()]  # the hand-over and its state: gone
    assert [c["action"] for sent in pointer.outbox for c in sent.commands] == ["welcome"]


def test_a_record_decided_just_before_the_merge_is_still_owed_after_the_survivor_confirmed() -> None:
    """The confirmation can be read before the loser's partition commits the records before
    the merge; killed then, the worker reads them again at the pointer, and their commands,
    maybe still in the dead producer then, must not be lost with the hand-over."""
    log = Log()
    two_profiles_then_a_login(log)
    steps = log.drain()
    [viewed_step] = [s for s in steps if s.event.event_id == "v-1"]

    again = log.decide(log.records.index(viewed_step.event))  # read again at the pointer

    assert again.effects.counted == "forwarded"
    assert owed_commands(again) == commands(viewed_step)  # the welcome, with its action id
    assert [sent for owed in again.owed for sent in owed.sends] == []  # no second hand-over


def test_a_pointer_with_an_outbox_survives_the_table_s_bytes_and_forgets_it_in_time() -> None:
    sent = records.Sent("0@7", 1000.0, ({"action": "welcome"},), ({"type": MERGE_IN, "state": b"\x81"},))
    pointer = records.Forward("c-old", (sent,))
    raw = records.encode(pointer)

    assert raw is not None and records.decode(raw) == pointer
    assert records.decode(records.encode(records.Forward("c-old"))) == records.Forward("c-old")
    assert outbox.owed(pointer, Effects(), "0@7", wall=1000.0 + outbox.KEEP_S) == ()  # long committed


# -- what a restarted worker owes, read back from the action topics -------------------------------


def owed_by_place(table: dict[bytes, bytes], where: str) -> tuple[records.Sent, ...]:
    stored = records.decode(table[KEY])
    assert isinstance(stored, records.Profile)
    return tuple(sent for sent in stored.outbox if sent.place == where)


class Topics:
    """The action topics as a lookup sees them: action ids by channel; and who asked what."""

    def __init__(self, **ids: set[str]) -> None:
        self.ids = ids
        self.asked: list[tuple[str, float]] = []

    def __call__(self, channel: str, since: float) -> set[str]:
        self.asked.append((channel, since))
        return set(self.ids.get(channel, set()))


def test_an_owed_command_already_on_its_topic_is_not_sent_again() -> None:
    table: dict[bytes, bytes] = {}
    first = step(table, viewed(), "0@10")
    [welcome] = commands(first)
    topics = Topics(web={welcome["action_id"]})

    assert asyncio.run(outbox.Delivered(topics).unsent(owed_by_place(table, "0@10"))) == []
    assert asyncio.run(outbox.Delivered(Topics()).unsent(owed_by_place(table, "0@10"))) == [Command(**welcome)]


def test_the_topics_are_read_once_for_a_restart_and_again_for_commands_decided_since() -> None:
    early = records.Sent("0@1", 1000.0, ({"channel": "email"} | WIRE,))
    topics = Topics()
    delivered = outbox.Delivered(topics)

    asyncio.run(delivered.unsent((early,)))
    asyncio.run(delivered.unsent((records.Sent("0@2", 1001.0, ({"channel": "email"} | WIRE,)),)))
    assert topics.asked == [("email", 1000.0 - outbox.SKEW_S)]  # the same few seconds: read once

    later = records.Sent("0@3", time.time() + 1, ({"channel": "email"} | WIRE,))
    asyncio.run(delivered.unsent((later,)))  # decided after the read: handed over by another worker
    older = records.Sent("0@0", 900.0, ({"channel": "email"} | WIRE,))
    asyncio.run(delivered.unsent((older,)))  # decided before what was read
    assert [since for _, since in topics.asked[1:]] == [later.at - outbox.SKEW_S, 900.0 - outbox.SKEW_S]


def test_a_record_in_doubt_after_a_hand_over_sends_only_what_the_worker_before_did_not() -> None:
    """The worker before decided the record and sent its command, and died before its table
    write reached the changelog: here the record is new and decides the same command."""
    [welcome] = commands(step({}, viewed(), "0@10"))
    topics = Topics(web={welcome["action_id"]})
    delivered = outbox.Delivered(topics)

    assert asyncio.run(not_sent_before([Command(**welcome)], Doubt(T0, T0 + 5), delivered)) == []
    assert topics.asked == [("web", T0 - outbox.SKEW_S)]
    again = outbox.Delivered(Topics())
    assert asyncio.run(not_sent_before([Command(**welcome)], Doubt(T0, T0 + 5), again)) == [Command(**welcome)]


def test_a_record_not_in_doubt_sends_its_commands_without_a_look() -> None:
    [welcome] = commands(step({}, viewed(), "0@10"))
    topics = Topics(web={welcome["action_id"]})

    assert asyncio.run(not_sent_before([Command(**welcome)], None, outbox.Delivered(topics))) == [Command(**welcome)]
    assert topics.asked == []


def test_a_topic_that_cannot_be_read_means_sending_again(caplog: pytest.LogCaptureFixture) -> None:
    def unreadable(channel: str, since: float) -> set[str]:
        raise Unfinished("1 partition(s) not read to their end in 60 s")

    owed = (records.Sent("0@1", 1000.0, ({"channel": "email"} | WIRE,)),)
    assert asyncio.run(outbox.Delivered(unreadable).unsent(owed)) == [Command(**({"channel": "email"} | WIRE))]
    assert "sending them again" in caplog.text


def test_a_topic_that_could_not_be_read_is_not_read_again_for_each_record_of_the_same_window() -> None:
    asked: list[float] = []

    def unreadable(channel: str, since: float) -> set[str]:
        asked.append(since)
        raise Unfinished("1 partition(s) not read to their end in 60 s")

    delivered = outbox.Delivered(unreadable)
    command = Command(**({"channel": "email"} | WIRE))
    for appended_at in (1000.0, 1001.0, 1002.0):  # records in doubt after a hand-over
        assert asyncio.run(delivered.not_on_topics([command], appended_at, 1010.0)) == [command]
    assert asked == [1000.0 - outbox.SKEW_S]


WIRE = {
    "action_id": "a-1",
    "customer_id": "c-1",
    "action": "nudge",
    "payload": {},
    "journey": "nudge",
    "reason": "r",
    "issued_at": T0,
    "expires_at": T0 + 60,
}


def test_a_wake_sent_by_a_clock_just_behind_its_wait_leaves_the_wait_and_its_key_for_the_next() -> None:
    """Keys hold due times to the millisecond: a wake by another host's clock, a moment behind
    the wait, finds nothing due. The wait keeps its key (it used to lose it, and never fire)."""
    table: dict[bytes, bytes] = {}
    due = Due()
    decide_step(table, due, KEY, viewed(at=0.0004), T0 + 0.0004, CTX, "p0@1")
    [key] = list(due)
    at = float(key.partition(b"|")[0])  # T0 + 3600.000, just before the wait

    def woken(clock: float) -> Step:
        event = Event(f"wake:{at:.3f}", WAKE, at, "c-1", "", T0 + 3601, properties={"clock": clock})
        return decide_step(table, due, KEY, event, T0 + 3601, CTX, "p0@2")

    early = woken(T0 + 3600.0002)
    assert early.effects.counted == "stale_wake" and list(due) == [key]
    assert [c["action"] for c in commands(woken(T0 + 3600.001))] == ["nudge"]
    assert list(due) == []
