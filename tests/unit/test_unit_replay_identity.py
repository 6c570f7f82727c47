"""Offline replay runs identity resolution like the stream: logins merge, erasures erase."""

from __future__ import annotations

from stories import identified_event

from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.identity.records import Erased, Forward, Profile, erased_key
from orchestrator.replay import Replay


def ev(n: int, type: str, at: float, customer_id: str | None = None, **ids: str) -> Event:
    props = {"product": "sku-1", "value": 20.0} if type in ("product_view", "purchase") else None
    return identified_event(f"r-{n}", type, at, customer_id, props, **ids)


def test_replay_merges_an_anonymous_profile_at_login() -> None:
    history = [
        ev(1, "product_view", 0, cookie="ck"),
        ev(2, "identify", 60, "c-1", cookie="ck"),
        ev(3, "page_view", 120, cookie="ck"),
        ev(4, "purchase", 180, "c-1"),
    ]
    player = Replay(Policy(), engine=None)

    commands = list(player.run(history))

    assert player.summary.customers == 1 and player.summary.events == 4
    assert player.records["cookie:ck"] == Forward("c-1")
    merged = player.records["c-1"]
    assert isinstance(merged, Profile) and merged.state.events == 4
    assert [c.action for c in commands] == ["remarketing_ad", "remarketing_stop", "upsell"]


def test_replay_erasure_removes_the_profile() -> None:
    history = [ev(1, "page_view", 0, "c-9", email="e@x"), ev(2, "erase", 10, "c-9")]
    player = Replay(Policy(), engine=None)

    list(player.run(history))

    assert set(player.records) == {erased_key("c-9"), erased_key("email:e@x")}
    assert all(isinstance(record, Erased) for record in player.records.values())


def test_replay_erases_an_event_dated_before_the_erasure_that_comes_after_it_in_the_file() -> None:
    """Replay reads in time order, so the late event is erased with the rest, as the stream
    drops it (``dropped_erased``); the event after the erasure starts afresh."""
    history = [ev(1, "page_view", 0, "c-9"), ev(2, "erase", 10, "c-9"), ev(3, "page_view", 5, "c-9")]
    history.append(ev(4, "page_view", 20, "c-9"))
    player = Replay(Policy(), engine=None)

    list(player.run(history))

    fresh = player.records["c-9"]
    assert isinstance(fresh, Profile) and fresh.state.events == 1
