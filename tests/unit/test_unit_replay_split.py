"""Replay split over several processes gives exactly what one process gives.

The same histories as the replay-equivalence tests (logins that merge profiles, shared
e-mails, erasures, redeliveries, late events), replayed in one process and in two and
three: the commands, in order, and the summaries must be equal."""

from __future__ import annotations

from typing import Any

import pytest
from test_unit_replay_equivalence import DAY, POLICIES, engine, history, probe

from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.replay import Replay
from orchestrator.replay_split import MAX_PROCESSES, default_processes, keys_of, plan, replay_split


def split(events: list[Event], policy: Policy, processes: int) -> tuple[list[Any], dict[str, Any]]:
    ticks: list[int] = []
    commands, summary = replay_split(
        events,
        lambda: Replay(policy, engine(probe())),
        processes,
        until=max(e.ts for e in events) + 100 * DAY,
        render=lambda command: command.to_wire(),
        progress=ticks.append,
    )
    out = list(commands)
    assert sum(ticks) == len(events)  # wakes are not counted as events
    return out, summary.as_dict()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("policy", list(POLICIES), ids=list(POLICIES))
def test_split_replay_equals_one_process(seed: int, policy: str) -> None:
    events = history(900, seed)
    single = split(events, POLICIES[policy], 1)
    assert single[0], "the history should produce commands"
    for processes in (2, 3):
        assert split(events, POLICIES[policy], processes) == single


def test_identity_groups_keep_linked_keys_together() -> None:
    events = history(900, 4)
    shares = plan(sorted(events, key=lambda e: e.ts), 3).shares
    owner = {}
    ordered = sorted(events, key=lambda e: e.ts)
    for i, share in enumerate(shares):
        for rank in share:
            for key in keys_of(ordered[rank]):
                assert owner.setdefault(key, i) == i, f"{key} is replayed in two processes"
    assert sorted(r for share in shares for r in share) == list(range(len(events)))
    assert all(shares), "every process gets work"


def test_a_failing_child_is_an_error_not_a_short_output() -> None:
    events = history(300, 5)

    def broken() -> Replay:
        raise ValueError("no journeys")

    commands, _ = replay_split(events, broken, 2)
    with pytest.raises(RuntimeError, match="no journeys"):
        list(commands)


def test_small_histories_use_one_process() -> None:
    assert default_processes(100) == 1


def test_no_process_is_planned_without_an_identity_group_to_replay() -> None:
    events = history(300, 5)[:2]
    ordered = sorted(events, key=lambda e: e.ts)

    shares = plan(ordered, 100_000).shares

    assert 1 <= len(shares) <= 2
    assert all(shares), "every process gets work"


def test_even_a_huge_history_forks_no_more_than_the_maximum() -> None:
    assert default_processes(10**12) <= MAX_PROCESSES
