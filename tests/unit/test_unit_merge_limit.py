"""A merge keeps the customer within ``ORCH_MAX_ACTIVE_JOURNEYS``, as one profile would have been.

Two profiles of one person can each be in journeys the limit allowed them alone. Merged, the
journeys entered last end (reason ``over_limit``), and only the others go on talking to them.
"""

from __future__ import annotations

from stories import identified_event

from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import Compiled, compile_text
from orchestrator.replay import Replay

DAY = 86400.0


def journey(jid: str, trigger: str, counts: bool = True) -> Compiled:
    text = f"""
id: {jid}
version: 1
trigger: {{event: {trigger}}}
counts_towards_limit: {str(counts).lower()}
steps:
  - id: later
    wait: 10d
  - id: say
    action: {{channel: web, action: say_{jid}}}
"""
    return compile_text(text, f"{jid}.yaml")


def engine(max_active: int = 2) -> Engine:
    journeys = [
        journey("j_a", "alpha"),
        journey("j_b", "beta"),
        journey("j_c", "gamma"),
        journey("watch", "delta", counts=False),
    ]
    return Engine(Catalogue.of(journeys), max_active)


def history() -> list[Event]:
    """The cookie enters j_a, then j_c; the customer id, between them, j_b and the watch."""
    return [
        identified_event("e1", "alpha", 0, cookie="ck"),
        identified_event("e2", "beta", 100, "c-1"),
        identified_event("e3", "delta", 150, "c-1"),
        identified_event("e4", "gamma", 300, cookie="ck"),
        identified_event("e5", "identify", 600, "c-1", cookie="ck"),
    ]


def test_the_journey_entered_last_ends_at_the_merge() -> None:
    player = Replay(Policy(), engine())
    list(player.run(history()))

    merged = player.state("c-1")
    assert merged is not None and set(merged.journeys) == {"j_a", "j_b", "watch"}
    assert player.summary.exits == {("j_c", "over_limit"): 1}
    assert "after" not in merged.journey_log["j_c"], "the merge took them out: no conversion window"


def test_only_the_journeys_kept_talk_to_the_customer() -> None:
    events = history()
    player = Replay(Policy(), engine())
    commands = list(player.run(events, until=events[-1].ts + 20 * DAY))

    assert sorted(c.action for c in commands) == ["say_j_a", "say_j_b", "say_watch"]


def test_a_merge_within_the_limit_ends_nothing() -> None:
    player = Replay(Policy(), engine(max_active=3))
    list(player.run(history()))

    merged = player.state("c-1")
    assert merged is not None and set(merged.journeys) == {"j_a", "j_b", "j_c", "watch"}
    assert not any(reason == "over_limit" for _, reason in player.summary.exits)
