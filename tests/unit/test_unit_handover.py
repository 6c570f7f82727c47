"""Which records a worker that took partitions over may find decided by the worker before it."""

from __future__ import annotations

from stories import T0, Customer

from agents.handover import LOOKBACK_S, Handover
from orchestrator.core.event import Event
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import compile_text

TOPIC = "orchestrator.customer-events"


def test_a_first_assignment_puts_the_records_already_in_the_log_in_doubt() -> None:
    handover = Handover(TOPIC)
    handover.assigned({(TOPIC, 0), (TOPIC, 1)}, now=100.0)

    assert handover.in_doubt((TOPIC, 0), 90.0) == (90.0, 100.0)  # read the action topics from its own time
    assert handover.in_doubt((TOPIC, 1), 99.9) == (99.9, 100.0)


def test_a_backlog_is_looked_up_from_a_while_before_the_hand_over_not_from_its_own_time() -> None:
    handover = Handover(TOPIC)
    handover.assigned({(TOPIC, 0)}, now=100_000.0)

    assert handover.in_doubt((TOPIC, 0), 10_000.0) == (100_000.0 - LOOKBACK_S, 100_000.0)


def test_the_first_record_appended_after_the_hand_over_ends_the_doubt_for_its_partition() -> None:
    handover = Handover(TOPIC)
    handover.assigned({(TOPIC, 0), (TOPIC, 1)}, now=100.0)

    assert handover.in_doubt((TOPIC, 0), 100.0) is None
    assert handover.in_doubt((TOPIC, 0), 95.0) is None  # a producer's clock behind: offsets tell
    assert handover.in_doubt((TOPIC, 1), 95.0) == (95.0, 100.0)


def test_partitions_kept_through_a_rebalance_are_not_in_doubt_and_those_taken_over_are() -> None:
    handover = Handover(TOPIC)
    handover.assigned({(TOPIC, 0), (TOPIC, 1)}, now=100.0)
    handover.in_doubt((TOPIC, 0), 100.0)
    handover.in_doubt((TOPIC, 1), 100.0)

    handover.assigned({(TOPIC, 0), (TOPIC, 1), (TOPIC, 2)}, now=200.0)

    assert handover.in_doubt((TOPIC, 0), 150.0) is None
    assert handover.in_doubt((TOPIC, 2), 150.0) == (150.0, 200.0)


def test_a_partition_lost_and_given_back_is_taken_over_again() -> None:
    handover = Handover(TOPIC)
    handover.assigned({(TOPIC, 0)}, now=100.0)
    handover.in_doubt((TOPIC, 0), 100.0)
    handover.assigned(set(), now=150.0)  # another worker held it in between

    handover.assigned({(TOPIC, 0)}, now=200.0)

    assert handover.in_doubt((TOPIC, 0), 180.0) == (180.0, 200.0)


def test_partitions_of_other_topics_are_not_tracked() -> None:
    handover = Handover(TOPIC)
    handover.assigned({(TOPIC, 0), ("orchestrator.journeys", 0)}, now=100.0)

    assert handover.taken_at == {(TOPIC, 0): 100.0}


WELCOME = compile_text(
    "id: welcome\nversion: 1\ntrigger: {event: signup}\nsteps:\n"
    "  - action: {channel: email, action: welcome}\n"
    "  - wait: 1d\n"
    "  - action: {channel: email, action: tips}\n",
    "welcome.yaml",
)


def test_a_journey_s_commands_have_the_same_ids_whenever_the_entry_is_decided() -> None:
    """A worker that takes a record over decides it later than the worker before it did: the
    ids must not depend on that, or the action topics would not show what was sent."""
    signup = Event("e-1", "signup", T0, "c-1", "web", T0, customer_id="c-1")
    ids = []
    for decided_at in (T0, T0 + 42.0):
        customer = Customer(Engine(Catalogue.of([WELCOME])))
        first = customer.decide(signup, decided_at)
        later = customer.wakes(86400 + 42.0)
        ids.append([c.action_id for c in first.commands + later.commands])

    assert len(ids[0]) == 2 and ids[0] == ids[1]
