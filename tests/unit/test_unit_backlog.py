"""A worker that is behind does not fire a wait before the events that arrived before it was due.

It took partitions over from a dead worker, restarted, or fell behind under load: it
decides an event (or a timer's wake) well after the event reached Kafka. A wait that
fell due in between must wait for those events, or a purchase made before the nudge was
due comes too late to cancel it. Two halves: the timer's clock follows how far the
ingest agent has read (:class:`agents.inbound_clock.InboundProgress`), and a decision
fires only the waits due by the time its event arrived
(:func:`orchestrator.core.decide.fire_until`).
"""

from __future__ import annotations

from typing import Any

from stories import JOURNEYS_ONLY, T0, Customer

from agents.inbound_clock import FIRST_RECORD_S, QUIET_S, InboundProgress
from orchestrator.core.decide import WAKE, Decision
from orchestrator.core.event import Event
from orchestrator.identity import records
from orchestrator.identity.graph import Context, Effects, handle
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import Compiled, compile_text

# -- the timer's clock --------------------------------------------------------------------------

WEB0, WEB1 = ("events.web", 0), ("events.web", 1)
WALL = T0 + 100.0


def test_a_worker_that_has_read_everything_fires_by_the_wall_clock() -> None:
    progress = InboundProgress()
    progress.record(WEB0, 41, T0 + 99, now=10.0)

    assert progress.clock(WALL, 10.5, {WEB0: 42}) == WALL
    assert progress.clock(WALL, 10.5, {}) == WALL


def test_while_a_partition_is_read_with_records_left_the_clock_is_the_last_record_forwarded() -> None:
    progress = InboundProgress()
    progress.record(WEB0, 10, T0 + 40, now=10.0)
    progress.record(WEB1, 5, T0 + 70, now=10.0)

    assert progress.clock(WALL, 10.5, {WEB0: 500, WEB1: 6}) == T0 + 40  # WEB1 has caught up
    progress.record(WEB0, 499, T0 + 95, now=11.0)
    assert progress.clock(WALL, 11.5, {WEB0: 500, WEB1: 6}) == WALL


def test_a_partition_new_to_the_worker_holds_every_wait_until_its_first_record_comes() -> None:
    progress = InboundProgress()

    assert progress.clock(WALL, 10.0, {WEB0: 500}) == float("-inf")  # nothing is known of its backlog
    assert progress.clock(WALL, 10.0, {WEB0: None}) == float("-inf")  # nor its end
    progress.record(WEB0, 0, T0 + 20, now=10.5)
    assert progress.clock(WALL, 10.6, {WEB0: 500}) == T0 + 20


def test_a_partition_taken_over_holds_waits_while_its_first_fetch_is_slow() -> None:
    """Seen on a loaded CI machine: the first records of a partition taken over from a dead
    worker came more than QUIET_S after the rebalance, and a wait fired before the purchase."""
    progress = InboundProgress()
    committed = {WEB0: 300}  # what the worker before it had forwarded

    assert progress.clock(WALL, 10.0, {WEB0: 500}, committed) == float("-inf")
    assert progress.clock(WALL, 10.0 + 5 * QUIET_S, {WEB0: 500}, committed) == float("-inf")
    progress.record(WEB0, 300, T0 + 60, now=10.0 + 5 * QUIET_S)
    assert progress.clock(WALL, 10.1 + 5 * QUIET_S, {WEB0: 500}, committed) == T0 + 60


def test_a_partition_new_to_the_worker_with_nothing_left_to_read_holds_nothing_back() -> None:
    progress = InboundProgress()

    assert progress.clock(WALL, 10.0, {WEB0: 500}, {WEB0: 500}) == WALL  # the worker before it read it all
    assert progress.clock(WALL, 10.0, {WEB1: 0}, {WEB1: None}) == WALL  # empty, never committed
    assert progress.clock(WALL, 10.0, {WEB1: None}, {WEB1: 500}) == float("-inf")  # its end is not known yet


def test_a_partition_nothing_comes_from_stops_holding_waits_back_after_a_while() -> None:
    """An end the worker never reaches (a transaction marker, a paused or failing fetch):
    late by at most QUIET_S once records came, or FIRST_RECORD_S if none ever does; never stuck."""
    progress = InboundProgress()
    assert progress.clock(WALL, 10.0, {WEB1: 7}, {WEB1: 6}) == float("-inf")
    progress.record(WEB0, 8, T0 + 50, now=10.0)  # the last record; a marker follows it

    assert progress.clock(WALL, 10.0 + QUIET_S / 2, {WEB0: 10}) == T0 + 50
    assert progress.clock(WALL, 10.1 + QUIET_S, {WEB0: 10}) == WALL
    assert progress.clock(WALL, 10.1 + QUIET_S, {WEB0: 10, WEB1: 7}, {WEB1: 6}) == float("-inf")
    assert progress.clock(WALL, 10.1 + FIRST_RECORD_S, {WEB0: 10, WEB1: 7}, {WEB1: 6}) == WALL


def test_after_a_rebalance_what_was_read_before_says_nothing() -> None:
    progress = InboundProgress()
    progress.record(WEB0, 499, T0 + 95, now=10.0)
    progress.follow(1)  # WEB0 went away and came back with another worker's backlog

    assert progress.clock(WALL, 10.5, {WEB0: 900}) == float("-inf")
    progress.follow(1)  # the same rebalance: nothing is forgotten
    progress.record(WEB0, 500, T0 + 96, now=10.6)
    assert progress.clock(WALL, 10.7, {WEB0: 900}) == T0 + 96


# -- a decision fires the waits due by the time its event arrived -----------------------------------

NUDGE = compile_text(
    "id: j\nversion: 1\ntrigger: {event: signup}\ngoal: {event: purchase}\nsteps:\n"
    "  - wait: 1h\n  - action: {channel: email, action: hello}\n",
    "j.yaml",
)
CTX = Context(JOURNEYS_ONLY, Engine(Catalogue.of([NUDGE])))
DUE = T0 + 3600
LATE = T0 + 7200  # the worker gets to the events only now


def arrived(event_id: str, kind: str, at: float) -> Event:
    return Event(event_id, kind, at, "c-1", "web", at, customer_id="c-1")


def decided(profile: records.Profile, event: Event, now: float) -> tuple[records.Profile, Effects]:
    effects = handle("c-1", profile, event, now, CTX)
    record = effects.record if isinstance(effects.record, records.Profile) else profile
    return record, effects


def waiting() -> records.Profile:
    effects = handle("c-1", records.Missing(), arrived("e-0", "signup", T0), T0, CTX)
    assert isinstance(effects.record, records.Profile)
    return effects.record


def actions(effects: Effects) -> list[str]:
    return [c.action for c in effects.decision.commands] if effects.decision else []


def test_a_purchase_read_late_behind_another_event_still_ends_the_wait_it_arrived_before() -> None:
    profile, browsed = decided(waiting(), arrived("e-1", "page_view", T0 + 1800), LATE)
    assert actions(browsed) == []  # the wait was due by the time it is read, not when it came
    assert profile.state.next_wake() == DUE

    profile, bought = decided(profile, arrived("e-2", "purchase", T0 + 1900), LATE + 1)
    assert actions(bought) == [] and bought.decision is not None
    assert [o.kind for o in bought.decision.outcomes] == ["convert", "exit"]
    assert profile.state.next_wake() is None

    wake = Event(f"wake:{DUE}", WAKE, DUE, "c-1", "", LATE, properties={"clock": LATE})
    assert decided(profile, wake, LATE + 2)[1].counted == "stale_wake"


def test_an_event_that_arrived_after_the_wait_was_due_still_fires_it_first() -> None:
    profile, browsed = decided(waiting(), arrived("e-1", "page_view", DUE + 60), LATE)

    assert actions(browsed) == ["hello"]
    assert profile.state.next_wake() is None


def test_a_wake_fires_only_the_waits_due_by_the_clock_it_was_sent_by() -> None:
    held_back = Event(f"wake:{DUE}", WAKE, DUE, "c-1", "", LATE, properties={"clock": DUE - 1})
    assert decided(waiting(), held_back, LATE)[1].counted == "stale_wake"

    on_time = Event(f"wake:{DUE}", WAKE, DUE, "c-1", "", LATE, properties={"clock": DUE})
    assert actions(decided(waiting(), on_time, LATE)[1]) == ["hello"]


# -- the rarer paths: a migration, and preferences that release a delayed action ---------------------

MINUTE, HOUR = 60.0, 3600.0


def read_late(person: Customer, kind: str, arrived_at: float, now: float, **props: Any) -> Decision:
    """``person`` decides an event that reached Kafka at ``arrived_at`` only at ``now`` (after T0)."""
    person.count += 1
    at = T0 + arrived_at
    event = Event(f"c-1-{kind}-{person.count}", kind, at, "c-1", "web", at, customer_id="c-1", properties=props)
    return person.decide(event, T0 + now)


def hello(version: int, wait: str, migrate: str = "") -> Compiled:
    text = f"id: m\nversion: {version}\ntrigger: {{event: signup}}\ngoal: {{event: purchase}}\n{migrate}steps:\n"
    text += f"  - {{id: first_wait, wait: {wait}}}\n  - action: {{channel: email, action: hello_v{version}}}\n"
    return compile_text(text, f"m.v{version}.yaml")


def migrating() -> Customer:
    """In v1's hour-long wait since T0, when v2 moves it to a 20-minute one."""
    catalogue = Catalogue.of([hello(1, "1h")])
    person = Customer(Engine(catalogue))
    person.does("signup", at=0.0)
    catalogue.add(hello(2, "20m", "migrate:\n  from: 1\n  steps: {first_wait: first_wait}\n"))
    return person


def test_a_migration_on_an_event_read_late_fires_only_what_was_due_when_the_event_came() -> None:
    person = migrating()
    browsed = read_late(person, "page_view", arrived_at=10 * MINUTE, now=2 * HOUR)
    assert [o.kind for o in browsed.outcomes] == ["migrate"] and browsed.commands == []
    assert person.next_wake == 20 * MINUTE  # for the timer, behind what came after the page view

    bought = read_late(person, "purchase", arrived_at=15 * MINUTE, now=2 * HOUR, value=10.0)
    assert bought.commands == [] and person.next_wake is None

    person = migrating()
    after = read_late(person, "page_view", arrived_at=25 * MINUTE, now=2 * HOUR)
    assert [c.action for c in after.commands] == ["hello_v2"]  # it came after the new due time


def test_preferences_read_late_release_a_delayed_action_on_its_wake_not_before_a_purchase() -> None:
    person = Customer(Engine(Catalogue.of([hello(1, "1h")])))
    person.does("preferences", quiet_hours={"start": "21:00", "end": "08:00"})
    person.does("signup", at=12 * HOUR)  # 20:00 UTC: hello falls due at 21:00 and waits for 08:00
    person.wakes(13 * HOUR)
    assert person.next_wake == 24 * HOUR

    released = read_late(person, "preferences", arrived_at=14 * HOUR, now=20 * HOUR, quiet_hours=None)
    assert released.commands == [] and person.next_wake == 20 * HOUR
    bought = read_late(person, "purchase", arrived_at=15 * HOUR, now=20 * HOUR + 1, value=10.0)
    assert bought.commands == [] and person.next_wake is None
