"""The Faust workaround's decisions, as plain functions (the broker test is in test_worker_web.py)."""

from __future__ import annotations

from dataclasses import dataclass

from agents.fetch_guard import first_undelivered, uncommitted


@dataclass(frozen=True, order=True)
class TP:
    topic: str
    partition: int


@dataclass(frozen=True)
class Rec:
    offset: int


def test_a_partition_the_group_never_committed_is_read_from_the_beginning() -> None:
    committed = {TP("events.booth", 0): None, TP("events.booth", 1): 0, TP("events.web", 0): 17}

    assert uncommitted(committed, set(committed), changelogs=set()) == [TP("events.booth", 0), TP("events.booth", 1)]


def test_table_changelogs_and_partitions_no_longer_assigned_are_left_alone() -> None:
    committed = {TP("app-customers-changelog", 0): None, TP("events.booth", 0): None, TP("events.booth", 1): None}
    assigned = {TP("app-customers-changelog", 0), TP("events.booth", 1)}

    assert uncommitted(committed, assigned, changelogs={"app-customers-changelog"}) == [TP("events.booth", 1)]


def test_the_first_record_not_delivered_is_where_a_cut_short_batch_resumes() -> None:
    batch = [Rec(5), Rec(6), Rec(7)]

    assert first_undelivered(batch, last_delivered=None) == 5
    assert first_undelivered(batch, last_delivered=5) == 6
    assert first_undelivered(batch, last_delivered=7) is None
