"""Which records a worker that took partitions over may find decided by the worker before it."""

from __future__ import annotations

from agents.handover import Handover

TOPIC = "orchestrator.customer-events"


def test_a_first_assignment_puts_the_records_already_in_the_log_in_doubt() -> None:
    handover = Handover(TOPIC)
    handover.assigned({(TOPIC, 0), (TOPIC, 1)}, now=100.0)

    assert handover.in_doubt((TOPIC, 0), 90.0) == 90.0  # read the action topics from its own time
    assert handover.in_doubt((TOPIC, 1), 99.9) == 99.9


def test_the_first_record_appended_after_the_hand_over_ends_the_doubt_for_its_partition() -> None:
    handover = Handover(TOPIC)
    handover.assigned({(TOPIC, 0), (TOPIC, 1)}, now=100.0)

    assert handover.in_doubt((TOPIC, 0), 100.0) is None
    assert handover.in_doubt((TOPIC, 0), 95.0) is None  # a producer's clock behind: offsets tell
    assert handover.in_doubt((TOPIC, 1), 95.0) == 95.0


def test_partitions_kept_through_a_rebalance_are_not_in_doubt_and_those_taken_over_are() -> None:
    handover = Handover(TOPIC)
    handover.assigned({(TOPIC, 0), (TOPIC, 1)}, now=100.0)
    handover.in_doubt((TOPIC, 0), 100.0)
    handover.in_doubt((TOPIC, 1), 100.0)

    handover.assigned({(TOPIC, 0), (TOPIC, 1), (TOPIC, 2)}, now=200.0)

    assert handover.in_doubt((TOPIC, 0), 150.0) is None
    assert handover.in_doubt((TOPIC, 2), 150.0) == 150.0


def test_a_partition_lost_and_given_back_is_taken_over_again() -> None:
    handover = Handover(TOPIC)
    handover.assigned({(TOPIC, 0)}, now=100.0)
    handover.in_doubt((TOPIC, 0), 100.0)
    handover.assigned(set(), now=150.0)  # another worker held it in between

    handover.assigned({(TOPIC, 0)}, now=200.0)

    assert handover.in_doubt((TOPIC, 0), 180.0) == 180.0


def test_partitions_of_other_topics_are_not_tracked() -> None:
    handover = Handover(TOPIC)
    handover.assigned({(TOPIC, 0), ("orchestrator.journeys", 0)}, now=100.0)

    assert handover.taken_at == {(TOPIC, 0): 100.0}
