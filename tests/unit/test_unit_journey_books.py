"""Every entry into a journey is accounted for: entries = exits (by any reason) + still inside.

The histories of the replay-equivalence tests (logins that merge profiles, shared e-mails,
erasures, redeliveries, late events), replayed to their end and well past it. Before, a
merge of two profiles that were both in a journey kept the survivor's instance and dropped
the other without an exit, and an erasure took the customer's journeys with it: entries less
exits overstated who was inside. Now those leave with reasons ``merged`` and ``erased``,
which the live metrics count the same way (``orchestrator_journey_exits_total``)."""

from __future__ import annotations

from collections import Counter

import pytest
from test_unit_replay_equivalence import DAY, POLICIES, engine, history, probe

from orchestrator.replay import Replay, Summary


def books(summary: Summary) -> dict[str, int]:
    """Per journey: entries less exits less those still inside; 0 when the books balance."""
    exits: Counter[str] = Counter()
    for (journey, _), n in summary.exits.items():
        exits[journey] += n
    inside: Counter[str] = Counter()
    for place, n in summary.inside.items():
        inside[place.split(":")[0]] += n
    return {j: summary.entries[j] - exits[j] - inside[j] for j in {*summary.entries, *exits, *inside}}


SEEDS = [1, 2, 3, 4, 5]


def replayed(seed: int, after_end_s: float) -> Summary:
    events = history(900, seed)
    player = Replay(POLICIES["journeys only"], engine(probe()))
    list(player.run(events, until=max(e.ts for e in events) + after_end_s))
    return player.summary


@pytest.mark.parametrize("seed", SEEDS)
def test_entries_are_exits_plus_those_still_inside(seed: int) -> None:
    middle, end = replayed(seed, 0), replayed(seed, 100 * DAY)  # in the middle of waits; every wait fired

    assert not any(books(middle).values()), books(middle)
    assert not any(books(end).values()), books(end)
    assert middle.inside and end.inside == {}, "every journey of the probe ends within 100 days"


def test_the_histories_merge_and_erase_customers_inside_journeys() -> None:
    reasons = {reason for seed in SEEDS for _, reason in replayed(seed, 0).exits}
    assert {"merged", "erased"} <= reasons


def test_the_summary_says_where_customers_still_are() -> None:
    events = history(900, 1)
    player = Replay(POLICIES["journeys only"], engine(probe()))
    list(player.run(events))
    inside = player.summary.as_dict()["inside"]
    assert inside and all(place.count(":") == 2 and ":v" in place for place in inside)
    assert sum(inside.values()) == sum(
        len(state.journeys) for key in player.records if (state := player.state(key)) is not None
    )
