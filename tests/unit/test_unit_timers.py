"""The timer path without a broker: wakes that change nothing, the due-index cursor, exact counts.

A sorted in-memory stand-in plays RocksDB: deleted keys stay behind as tombstones that an
iterator steps over, as RocksDB's do until compaction, and it counts those steps, so the
tests can check what a tick touches instead of timing it.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from stories import JOURNEYS_ONLY, T0

from agents.journeys import RETRY_AFTER_S, DueCursor, InFlight, JourneyRuntime, due_key, due_limit
from agents.web import KEYS, OFFSET_KEY, CountedTable, KeyCounts, spend
from orchestrator import metrics
from orchestrator.core.decide import WAKE
from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.core.state import CustomerState
from orchestrator.identity import records
from orchestrator.identity.graph import Context, handle
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import compile_text
from orchestrator.replay import Replay

# -- a RocksDB stand-in --------------------------------------------------------------------------


class FakeDB:
    def __init__(self) -> None:
        self.keys_: list[bytes] = []  # sorted, tombstones included
        self.live: dict[bytes, bytes] = {}
        self.steps = 0  # entries an iterator has stepped onto, tombstones included

    def put(self, key: bytes, value: bytes = b"1") -> None:
        i = bisect.bisect_left(self.keys_, key)
        if i == len(self.keys_) or self.keys_[i] != key:  # else a tombstone comes back to life
            self.keys_.insert(i, key)
        self.live[key] = value

    def delete(self, key: bytes) -> None:
        self.live.pop(key, None)  # the key stays in keys_: a tombstone

    def get(self, key: bytes) -> bytes | None:
        return self.live.get(key)

    def iter(self) -> FakeIterator:
        return FakeIterator(self)

    def keys(self, from_key: bytes = b"") -> Iterator[bytes]:
        return (key for key, _ in self.items(from_key))

    def items(self, from_key: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        it = self.iter()
        it.seek(from_key)
        while it.valid():
            yield it.key(), self.live[it.key()]
            it.next()


class FakeIterator:
    def __init__(self, db: FakeDB) -> None:
        self.db, self.i = db, len(db.keys_)

    def seek(self, key: bytes) -> None:
        self.i = bisect.bisect_left(self.db.keys_, key)
        self._skip()

    def _skip(self) -> None:
        while self.i < len(self.db.keys_) and self.db.keys_[self.i] not in self.db.live:
            self.db.steps += 1
            self.i += 1

    def valid(self) -> bool:
        return self.i < len(self.db.keys_)

    def key(self) -> bytes:
        return self.db.keys_[self.i]

    def next(self) -> None:
        self.db.steps += 1
        self.i += 1
        self._skip()


@dataclass(frozen=True)
class Meta:
    topic_partition: TopicPartition
    offset: int


class Sent:
    """A send's future that has resolved to a record's metadata (or failed)."""

    def __init__(self, offset: int, error: Exception | None = None) -> None:
        self.meta, self.error = Meta(TopicPartition("events", 0), offset), error

    def done(self) -> bool:
        return True

    def cancelled(self) -> bool:
        return False

    def exception(self) -> Exception | None:
        return self.error

    def result(self) -> Meta:
        return self.meta


def limit(at: float) -> bytes:
    return f"{T0 + at:017.3f}|".encode() + b"\xff"


def key(at: float, customer: str) -> bytes:
    return due_key(T0 + at, customer.encode())


def tick(cursor: DueCursor, db: FakeDB, at: float, committed: int, room: int = 10_000) -> list[bytes]:
    """What one tick at ``T0 + at`` sends, with the decide agent done with every offset below
    ``committed``; each wake sent gets the next offset."""
    runtime = JourneyRuntime(Engine(Catalogue.of([])))
    runtime.done("events", 0, committed - 1)
    keys = cursor.settle(db, runtime.processed, at)
    keys += cursor.due(db, limit(at), room - len(cursor.inflight) - len(keys))
    for k in keys:
        cursor.inflight[k] = InFlight(Sent(tick.offset))
        tick.offset += 1
    return keys


tick.offset = 0  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def offsets() -> None:
    tick.offset = 0  # type: ignore[attr-defined]


# -- the cursor: each due key once, never again while its wake is on its way ----------------------


def test_a_due_key_gets_one_wake_however_long_its_wake_takes_to_be_processed() -> None:
    db, cursor = FakeDB(), DueCursor()
    db.put(key(1, "ann"))
    db.put(key(5, "bob"))

    assert tick(cursor, db, 2, committed=0) == [key(1, "ann")]
    for at in range(3, 3600, 7):  # an hour behind: ann's wake is still in the backlog
        assert tick(cursor, db, at, committed=0) == ([key(5, "bob")] if at == 10 else [])


def test_a_processed_wake_that_took_its_key_is_forgotten_and_nothing_is_sent_again() -> None:
    db, cursor = FakeDB(), DueCursor()
    db.put(key(1, "ann"))
    tick(cursor, db, 2, committed=0)
    db.delete(key(1, "ann"))  # the decide agent fired the wait

    assert tick(cursor, db, 3, committed=1) == []
    assert cursor.inflight == {} and cursor.retry == {}


def test_a_wake_processed_without_taking_its_key_goes_again_after_a_while() -> None:
    db, cursor = FakeDB(), DueCursor()
    db.put(key(1, "ann"))
    tick(cursor, db, 2, committed=0)

    assert tick(cursor, db, 3, committed=1) == []  # processed, key still there: dropped (e.g. it failed)
    assert tick(cursor, db, 3 + RETRY_AFTER_S / 2, committed=1) == []
    assert tick(cursor, db, 3 + RETRY_AFTER_S, committed=1) == [key(1, "ann")]


def test_a_wake_the_producer_failed_to_send_goes_again_soon() -> None:
    db, cursor = FakeDB(), DueCursor()
    db.put(key(1, "ann"))
    [k] = cursor.due(db, limit(2), 10)
    cursor.inflight[k] = InFlight(Sent(0, error=RuntimeError("broker gone")))

    assert tick(cursor, db, 2.5, committed=0) == []
    assert tick(cursor, db, 4, committed=0) == [k]


def test_a_wake_counts_as_processed_once_the_decide_agent_is_done_with_its_offset_in_its_partition() -> None:
    runtime = JourneyRuntime(Engine(Catalogue.of([])))
    wake = Meta(TopicPartition("events", 1), 41)
    assert not runtime.processed(wake)  # nothing handled on that partition yet

    runtime.done("events", 0, 500)  # another partition's progress says nothing about it
    runtime.done("events", 1, 40)
    assert not runtime.processed(wake)

    runtime.done("events", 1, 41)
    assert runtime.processed(wake)


def test_a_key_written_below_where_the_last_tick_stopped_is_still_found() -> None:
    db, cursor = FakeDB(), DueCursor()
    db.put(key(10, "late"))
    tick(cursor, db, 20, committed=0)
    db.put(key(5, "already-due"))  # e.g. a late event in event-time mode, or a wait of 0 s
    cursor.lower(key(5, "already-due"))

    assert tick(cursor, db, 21, committed=0) == [key(5, "already-due")]


def test_a_tick_does_not_step_over_the_keys_that_fired_before() -> None:
    db, cursor = FakeDB(), DueCursor()
    for i in range(1000):
        db.put(key(i / 10, f"c{i:04d}"))
    db.put(key(1000, "later"))
    tick(cursor, db, 100, committed=0)
    for i in range(1000):
        db.delete(key(i / 10, f"c{i:04d}"))  # all fired: 1,000 tombstones at the front

    db.steps = 0
    assert tick(cursor, db, 100.25, committed=1000) == []
    assert db.steps <= 2  # seeks past them (a scan from the start would take 1,000 steps)


def test_the_wakes_in_flight_are_bounded_and_the_rest_wait_their_turn() -> None:
    db, cursor = FakeDB(), DueCursor()
    for i in range(25):
        db.put(key(i / 100, f"c{i:02d}"))

    first = tick(cursor, db, 1, committed=0, room=10)
    assert len(first) == 10 and len(cursor.inflight) == 10
    assert tick(cursor, db, 2, committed=0, room=10) == []  # nothing processed, no room
    for k in first:
        db.delete(k)
    second = tick(cursor, db, 3, committed=10, room=10)
    assert len(second) == 10 and not set(first) & set(second)


# -- exact counts ---------------------------------------------------------------------------------


def test_a_count_in_chunks_is_exact_while_writes_land_before_and_after_where_it_is() -> None:
    db = FakeDB()
    for i in range(100):
        db.put(f"k{i:03d}".encode(), b"p")
    db.put(OFFSET_KEY, b"42")
    counts = KeyCounts(app=None)

    assert counts.advance([(0, db)], chunk=30) is None
    passed = counts.parts[0].passed
    assert passed is not None
    behind, ahead = f"k{0:03d}".encode(), f"k{99:03d}".encode()
    db.delete(behind)
    counts.wrote(0, behind, b"p", None)  # already counted: the difference applies
    db.put(b"k0005x", b"p")
    counts.wrote(0, b"k0005x", None, b"p")
    db.delete(ahead)
    counts.wrote(0, ahead, b"p", None)  # not reached yet: the count will see it gone
    while (total := counts.advance([(0, db)], chunk=30)) is None:
        pass

    assert total[KEYS] == len([k for k in db.live if k != OFFSET_KEY]) == 99
    db.put(b"zzz", b"p")
    counts.wrote(0, b"zzz", None, b"p")
    assert counts.advance([(0, db)]) == {KEYS: 100}


def test_a_step_counts_its_chunk_across_partitions_so_its_cost_does_not_grow_with_them() -> None:
    dbs = [(p, FakeDB()) for p in range(4)]
    for p, db in dbs:
        for i in range(5 + p):
            db.put(f"p{p}-{i}".encode(), b"p")
    counts = KeyCounts(app=None)
    steps = 1
    while (total := counts.advance(dbs, chunk=4)) is None:
        steps += 1
        assert sum(part.count[KEYS] for part in counts.parts.values()) <= 4 * steps
    assert total == {KEYS: 5 + 6 + 7 + 8}
    assert counts.exact() == {0: {KEYS: 5}, 1: {KEYS: 6}, 2: {KEYS: 7}, 3: {KEYS: 8}}


def test_counting_stops_when_done_or_when_its_budget_is_spent_and_lets_other_work_run_between_steps() -> None:
    now = [0.0]
    steps: list[str] = []

    def step(until: int) -> bool:
        steps.append("count")
        now[0] += 0.25
        return len([s for s in steps if s == "count"]) >= until

    async def other() -> None:
        for _ in range(20):
            steps.append("other")
            await asyncio.sleep(0)

    async def run(budget_s: float, until: int) -> None:
        task = asyncio.ensure_future(other())
        await asyncio.sleep(0)
        await spend(budget_s, lambda: step(until), clock=lambda: now[0])
        task.cancel()

    asyncio.run(run(2.0, until=3))
    assert steps.count("count") == 3  # done before the budget
    assert "other" in steps[steps.index("count") : len(steps) - steps[::-1].index("count")]
    steps.clear()
    asyncio.run(run(1.0, until=100))
    assert steps.count("count") == 4  # a quarter of a second each: the budget is spent after the fourth


def test_only_the_values_that_count_are_counted() -> None:
    db = FakeDB()
    db.put(b"c-1", b"\x85profile")
    db.put(b"cookie:1", records.FORWARD + b"c-1")
    counts = KeyCounts(app=None, counts=records.is_profile)
    assert counts.advance([(0, db)]) == {KEYS: 1}


# -- a wake that finds nothing due writes nothing -------------------------------------------------

WAIT = compile_text(
    "id: j\nversion: 1\ntrigger: {event: signup}\nsteps:\n  - wait: 1h\n  - action: {channel: email, action: hello}\n",
    "j.yaml",
)
CTX = Context(JOURNEYS_ONLY, Engine(Catalogue.of([WAIT])))


def wake(at: float) -> Event:
    return Event(f"wake:{at}", WAKE, T0 + at, "c-1", "", T0 + at)


def signed_up() -> records.Profile:
    event = Event("e-1", "signup", T0, "c-1", "web", T0, customer_id="c-1")
    effects = handle("c-1", records.Missing(), event, T0, CTX)
    assert isinstance(effects.record, records.Profile)
    return effects.record


def test_a_wake_before_the_wait_is_due_changes_nothing_and_writes_nothing() -> None:
    profile = signed_up()
    before = profile.state.to_bytes()

    effects = handle("c-1", profile, wake(60), T0 + 60, CTX)

    assert effects.record is None and effects.decision is None and effects.sends == []
    assert effects.counted == "stale_wake"
    assert profile.state.to_bytes() == before


def test_a_wake_fires_the_wait_once_and_the_same_wake_again_writes_nothing() -> None:
    profile = signed_up()
    first = handle("c-1", profile, wake(3600), T0 + 3600, CTX)
    assert isinstance(first.record, records.Profile)
    assert first.decision is not None and [c.action for c in first.decision.commands] == ["hello"]

    again = handle("c-1", first.record, wake(3600), T0 + 3601, CTX)

    assert again.record is None and again.decision is None and again.counted == "stale_wake"
    assert "wake:3600" not in first.record.state.seen_ids  # wakes take no room in the dedupe window


# -- customers inside each journey step (orchestrator_journey_customers) --------------------------


def test_the_journey_tally_follows_a_customer_from_the_wait_out_of_the_journey() -> None:
    waiting = signed_up()
    step = waiting.state.journeys["j"]["step"]
    stored = records.encode(waiting)
    assert stored is not None
    db = FakeDB()
    db.put(b"c-1", stored)
    db.put(b"cookie:1", records.FORWARD + b"c-1")
    db.put(b"c-2", records.encode(records.Profile(CustomerState("c-2"))) or b"")  # in no journey
    tally = KeyCounts(app=None, tally=records.journey_places)
    assert tally.advance([(0, db)]) == {("j", "1", step): 1}

    fired = handle("c-1", waiting, wake(3600), T0 + 3600, CTX)  # the action goes out, the journey ends
    assert isinstance(fired.record, records.Profile) and not fired.record.state.journeys
    done = records.encode(fired.record)
    assert done is not None
    db.put(b"c-1", done)
    tally.wrote(0, b"c-1", stored, done)  # as CountedTable does for each write

    assert tally.advance([(0, db)]) == {}
    db.put(b"c-1", stored)
    tally.wrote(0, b"c-1", done, stored)
    assert tally.advance([(0, db)]) == {("j", "1", step): 1}
    tally.wrote(0, b"c-1", stored, None)  # deleted (merged away, erased)
    assert tally.advance([(0, db)]) == {}


class TableOver:
    """A Faust table as CountedTable sees it: get, set and delete over one partition's
    RocksDB; it counts its reads."""

    def __init__(self, db: FakeDB) -> None:
        self.db, self.reads = db, 0

    def get(self, key: bytes, default: Any = None) -> Any:
        self.reads += 1
        value = self.db.get(key)
        return default if value is None else value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.db.delete(key)


def test_a_counted_write_takes_the_value_it_replaces_from_the_read_before_it(monkeypatch) -> None:
    monkeypatch.setattr("agents.web.current_partition", lambda: 0)  # Faust's current event: partition 0
    app = SimpleNamespace(rebalancing_count=0)
    db = FakeDB()
    table = TableOver(db)
    counted = CountedTable(table, app, counts=lambda value: value != b"pointer")
    counted.counts.advance([(0, db)])

    counted[b"c-1"] = b"profile"  # nothing read before it: the table is read
    assert table.reads == 1
    assert counted.get(b"c-1") == b"profile"
    counted[b"c-1"] = b"pointer"  # as the decide agent does: read, decide, write
    assert table.reads == 2 and counted.counts.exact() == {0: {KEYS: 0}}
    counted[b"c-1"] = b"profile"  # again: the value just written is the one replaced
    assert table.reads == 2 and counted.counts.exact() == {0: {KEYS: 1}}

    assert counted.get(b"c-2") is None
    counted[b"c-1"] = b"pointer"  # the last read was another key's
    assert table.reads == 4 and counted.counts.exact() == {0: {KEYS: 0}}

    counted.get(b"c-1")
    app.rebalancing_count = 1  # recovery may have rewritten it since: read again
    db.put(b"c-1", b"profile")
    counted[b"c-1"] = b"profile"
    assert table.reads == 6
    counted.counts.advance([(0, db)])
    del counted[b"c-1"]
    assert table.reads == 6 and counted.counts.exact() == {0: {KEYS: 0}} and db.get(b"c-1") is None


def test_the_journey_tally_reads_a_profile_whose_data_spells_the_field_name() -> None:
    """Skipping the decode when the field holds an empty map must not be fooled by a value
    that spells the same bytes; then the profile is decoded."""
    state = signed_up().state
    state.cart["journeys"] = {}  # a product called "journeys": the same bytes, an empty map after them
    raw = records.encode(records.Profile(state))
    assert raw is not None
    assert records.journey_places(raw) == {("j", "1", state.journeys["j"]["step"]): 1}
    assert records.journey_places(records.FORWARD + b"c-1") == {}


def test_the_journey_tally_reads_only_the_field_yet_agrees_with_a_whole_decode() -> None:
    """journey_places reads the value after the field's name, not the whole profile: on
    every record of a replay full of journeys, merges and erasures, it gives what decoding
    the whole profile gives."""
    from test_unit_replay_equivalence import engine, history

    player = Replay(Policy(), engine())
    for count, _ in enumerate(player.run(history(1500, seed=5))):
        if count % 100:
            continue
        for record in list(player.records.values()):
            raw = records.encode(record)
            if raw is None:
                continue
            assert records.journey_places(raw) == whole_decode_places(raw)
    assert any(isinstance(r, records.Profile) and r.state.journeys for r in player.records.values())


def whole_decode_places(raw: bytes) -> dict[tuple[str, str, str], int]:
    record = records.decode(raw)
    if not isinstance(record, records.Profile):
        return {}
    return {(jid, str(inst["v"]), str(inst["step"])): 1 for jid, inst in record.state.journeys.items()}


def test_the_journey_tally_counts_nothing_it_cannot_read() -> None:
    state = signed_up().state
    raw = records.encode(records.Profile(state))
    assert raw is not None
    cut = raw[: raw.find(b"journeys") + len(b"journeys") + 2]  # the field's value cut short
    assert records.journey_places(cut) == {}
    assert records.journey_places(b"\xa8journeys\xa5steps") == {}  # not a map after the name
    assert records.journey_places(b"") == {}


def test_the_journey_gauge_drops_a_step_nobody_is_at_any_more() -> None:
    metrics.set_journey_customers({("j", "1", "s1"): 2, ("j", "2", "s1"): 1})
    metrics.set_journey_customers({("j", "2", "s1"): 3, ("j", "2", "s2"): 0})
    samples = {
        (s.labels["journey"], s.labels["version"], s.labels["step"]): s.value
        for family in metrics.JOURNEY_CUSTOMERS.collect()
        for s in family.samples
    }
    assert samples == {("j", "2", "s1"): 3}


# -- the worker's log level -----------------------------------------------------------------------


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize("level", ["warning", "error"])
def test_at_warning_and_above_the_root_logger_keeps_the_level_asked_for(level: str, root_logger: Any) -> None:
    import faust

    from orchestrator.cli.worker import make_worker

    app = faust.App(f"log-level-{level}", broker="kafka://127.0.0.1:1", store="memory://")
    make_worker(app, level)._setup_logging()

    assert root_logger.level == logging.getLevelName(level.upper())


def test_an_event_time_watermark_follows_the_latest_event_of_its_partition_and_never_goes_back() -> None:
    runtime = JourneyRuntime(Engine(Catalogue.of([])))

    runtime.observe(0, T0 + 60)
    runtime.observe(0, T0 + 10)  # late: the clock does not go back
    runtime.observe(1, T0 + 5)

    assert runtime.watermarks == {0: T0 + 60, 1: T0 + 5}


def test_a_key_is_due_only_once_the_clock_is_past_the_wait_it_holds_to_the_millisecond() -> None:
    wait = T0 + 5.0004  # its key says T0 + 5.000
    assert due_key(wait, b"c-1") > due_limit(T0 + 5.0002)  # the same millisecond, before the wait
    assert due_key(wait, b"c-1") > due_limit(wait)
    assert due_key(wait, b"c-1") <= due_limit(T0 + 5.0015)
    assert due_limit(float("-inf")) < due_key(T0, b"c-1")
