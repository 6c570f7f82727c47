"""Lifecycle stage: derived from what a customer did, and how long ago."""

from __future__ import annotations

import pytest

from orchestrator.core.decide import decide
from orchestrator.core.event import Event
from orchestrator.core.lifecycle import LAPSE_AFTER_S, STAGES, stage
from orchestrator.core.state import CustomerState

T0 = 1_800_000_000.0
DAY = 86400.0


def journey(*types: str, customer_id: str | None = "c-42") -> CustomerState:
    """The state after one event of each type, a minute apart, ending at T0."""
    state = None
    for i, type in enumerate(types):
        ts = T0 - (len(types) - 1 - i) * 60.0
        event = Event(
            event_id=f"e-{i}",
            type=type,
            ts=ts,
            customer_key=customer_id or "cookie:k1",
            channel="web",
            received_at=ts,
            customer_id=customer_id,
            identifiers={} if customer_id else {"cookie": "k1"},
            properties={"products": [{"id": f"sku-{i}"}], "value": 10.0} if type == "purchase" else {},
        )
        state = decide(state, event, ts).state
    assert state is not None
    return state


def test_a_visitor_known_only_by_a_cookie_is_anonymous():
    assert stage(journey("page_view", "product_view", customer_id=None), T0) == "anonymous"


def test_a_known_customer_who_only_browsed_is_a_prospect():
    assert stage(journey("page_view", "search", "product_view"), T0) == "prospect"


@pytest.mark.parametrize("type", ["add_to_cart", "email_click", "ad_click", "store_visit", "signup"])
def test_a_customer_who_engaged_but_never_bought_is_engaged(type):
    assert stage(journey("page_view", type), T0) == "engaged"


def test_an_anonymous_visitor_who_fills_a_cart_is_engaged():
    assert stage(journey("add_to_cart", customer_id=None), T0) == "engaged"


def test_one_purchase_makes_a_customer():
    assert stage(journey("add_to_cart", "purchase"), T0) == "customer"


def test_a_second_purchase_makes_a_repeat_customer():
    assert stage(journey("purchase", "purchase"), T0) == "repeat"


def test_a_buyer_who_has_been_quiet_for_91_days_has_lapsed():
    assert stage(journey("purchase"), T0 + 91 * DAY) == "lapsed"


def test_a_repeat_buyer_who_has_been_quiet_too_long_has_lapsed_too():
    assert stage(journey("purchase", "purchase"), T0 + LAPSE_AFTER_S + 1) == "lapsed"


def test_a_buyer_quiet_for_89_days_has_not_lapsed():
    assert stage(journey("purchase"), T0 + 89 * DAY) == "customer"


def test_someone_who_never_bought_does_not_lapse():
    assert stage(journey("add_to_cart"), T0 + 365 * DAY) == "engaged"


def test_coming_back_after_a_lapse_makes_a_customer_active_again():
    state = journey("purchase")
    later = T0 + 100 * DAY
    assert stage(state, later) == "lapsed"
    visit = Event(
        event_id="back",
        type="page_view",
        ts=later,
        customer_key="c-42",
        channel="web",
        received_at=later,
        customer_id="c-42",
    )
    assert stage(decide(state, visit, later).state, later) == "customer"


def test_every_stage_is_one_of_the_documented_stages():
    states = [journey("page_view", customer_id=None), journey("page_view"), journey("purchase")]
    assert {stage(s, T0) for s in states} <= set(STAGES)
    assert stage(CustomerState(key="nobody"), T0) == "anonymous"
