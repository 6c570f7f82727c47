"""decide(): the seed stories, contact policy, determinism, purity and bounded state."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from orchestrator.core.decide import Decision, decide
from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.core.state import MAX_IDENTIFIER_KINDS, MAX_KINDS, MAX_SUBJECTS, CustomerState
from schemas.commands import ActionCommand

T0 = 1_800_000_000.0
HOUR = 3600.0
DAY = 86400.0
DEFAULT_POLICY = Policy()


class Customer:
    """One customer's journey: each call feeds an event through decide and keeps the new state.

    ``via`` is the channel that saw the event; other keyword arguments are its properties.
    """

    def __init__(
        self, policy: Policy = DEFAULT_POLICY, customer_id: str | None = "c-42", key: str | None = None
    ) -> None:
        self.policy = policy
        self.customer_id = customer_id
        self.key = key or customer_id or "cookie:k1"
        self.state: CustomerState | None = None
        self.count = 0

    def event(self, type: str, at: float = 0.0, via: str = "web", event_id: str | None = None, **props) -> Event:
        self.count += 1
        return Event(
            event_id=event_id or f"{type}-{self.count}",
            type=type,
            ts=T0 + at,
            customer_key=self.key,
            channel=via,
            received_at=T0 + at,
            customer_id=self.customer_id,
            identifiers={} if self.customer_id else dict([self.key.split(":", 1)]),  # "cookie:k1" -> {"cookie": "k1"}
            properties=props,
        )

    def does(self, type: str, at: float = 0.0, via: str = "web", event_id: str | None = None, **props) -> Decision:
        decision = decide(self.state, self.event(type, at, via, event_id, **props), T0 + at, self.policy)
        self.state = decision.state
        return decision

    def buys(self, *products: str, at: float = 0.0, value: float = 129.0) -> Decision:
        items = [{"id": p, "price": value, "qty": 1} for p in products]
        return self.does("purchase", at, products=items, value=value, currency="EUR")


def actions(decision: Decision) -> list[tuple[str, str]]:
    return [(c.channel, c.action) for c in decision.commands]


def held(decision: Decision) -> list[tuple[str, str]]:
    return [(h.command.action, h.reason) for h in decision.held]


# --- the seed stories -----------------------------------------------------------------------------


def test_a_search_asks_the_ads_channel_for_a_remarketing_ad_with_an_incentive():
    decision = Customer().does("search", via="search", query="Trail Running Shoes")
    assert actions(decision) == [("ads", "remarketing_ad")]
    ad = decision.commands[0]
    assert ad.customer_id == "c-42"
    assert ad.journey == "remarketing"
    assert ad.payload["query"] == "trail running shoes"
    assert ad.payload["incentive"] == {"type": "discount", "percent": 10, "code": "RM10-TRAILRUNNING"}
    assert ad.payload["in_cart"] is False
    assert "trail running shoes" in ad.reason
    assert "10%" in ad.reason
    assert ad.issued_at == T0
    assert ad.expires_at == T0 + DAY


def test_viewing_a_product_remarkets_that_product():
    ad = Customer().does("product_view", product="sku-trail-shoe").commands[0]
    assert ad.action == "remarketing_ad"
    assert ad.payload["product"] == "sku-trail-shoe"
    assert "product sku-trail-shoe" in ad.reason


def test_adding_to_cart_offers_the_bigger_cart_discount():
    ad = Customer().does("add_to_cart", product="sku-daypack", price=89.0, qty=1).commands[0]
    assert ad.action == "remarketing_ad"
    assert ad.payload["incentive"]["percent"] == 15
    assert ad.payload["in_cart"] is True
    assert "15%" in ad.reason


def test_the_discounts_come_from_the_policy():
    customer = Customer(Policy(remarketing_discount_percent=5, cart_discount_percent=25))
    assert customer.does("search", query="tent").commands[0].payload["incentive"]["percent"] == 5
    assert customer.does("add_to_cart", product="sku-tent-2p").commands[0].payload["incentive"]["percent"] == 25


@pytest.mark.parametrize("type", ["page_view", "email_open", "ad_click", "store_visit", "search"])
def test_events_without_a_subject_lead_to_no_command(type):
    decision = Customer().does(type, campaign="autumn")
    assert decision.commands == []
    assert decision.held == []


def test_a_second_view_of_the_same_product_within_the_cooldown_is_held_back():
    customer = Customer()
    customer.does("product_view", product="sku-1")
    again = customer.does("product_view", at=HOUR, product="sku-1")
    assert again.commands == []
    assert held(again) == [("remarketing_ad", "cooldown")]


def test_the_same_product_is_remarketed_again_once_the_cooldown_is_over():
    customer = Customer()
    customer.does("product_view", product="sku-1")
    assert actions(customer.does("product_view", at=DAY + 1, product="sku-1")) == [("ads", "remarketing_ad")]


def test_a_purchase_stops_remarketing_for_the_bought_product_and_the_searches_that_led_to_it():
    customer = Customer()
    customer.does("search", via="search", query="Trail Shoes")
    customer.does("product_view", at=60, product="sku-1")
    customer.does("product_view", at=120, product="sku-2")
    decision = customer.buys("sku-1", at=HOUR)
    assert actions(decision) == [("ads", "remarketing_stop"), ("email", "upsell")]
    stop = decision.commands[0]
    assert stop.payload == {"subjects": ["product:sku-1", "query:trail shoes"]}
    assert "product:sku-1" in stop.reason
    assert stop.expires_at == T0 + HOUR + 7 * DAY
    assert set(customer.state.remarketed) == {"product:sku-2"}


def test_a_purchase_with_nothing_remarketed_sends_no_stop():
    assert actions(Customer().buys("sku-1")) == [("email", "upsell")]


def test_a_first_purchase_is_followed_by_an_upsell_email():
    upsell = Customer().buys("sku-1", value=129.0).commands[-1]
    assert (upsell.channel, upsell.action, upsell.journey) == ("email", "upsell", "post_purchase")
    assert upsell.payload == {"purchased": ["sku-1"], "offer": "complementary_products", "order_value": 129.0}
    assert "first purchase" in upsell.reason
    assert "129.00 EUR" in upsell.reason
    assert upsell.expires_at == T0 + 72 * HOUR


def test_a_second_purchase_is_followed_by_a_retention_email():
    customer = Customer()
    customer.buys("sku-1")
    retention = customer.buys("sku-2", at=DAY).commands[-1]
    assert (retention.channel, retention.action) == ("email", "retention")
    assert retention.payload["purchases"] == 2
    assert "purchase number 2" in retention.reason


def test_after_a_purchase_viewing_the_bought_product_is_held_back_as_already_converted():
    customer = Customer()
    customer.buys("sku-1")
    decision = customer.does("product_view", at=HOUR, product="sku-1")
    assert decision.commands == []
    assert held(decision) == [("remarketing_ad", "already_converted")]


def test_after_a_purchase_other_products_are_still_remarketed():
    customer = Customer()
    customer.buys("sku-1")
    assert actions(customer.does("product_view", at=HOUR, product="sku-2")) == [("ads", "remarketing_ad")]


def test_an_anonymous_visitor_is_addressed_by_their_customer_key():
    ad = Customer(customer_id=None, key="cookie:k1").does("search", query="tent").commands[0]
    assert ad.customer_id == "cookie:k1"


# --- duplicates, purity, determinism --------------------------------------------------------------


def test_a_duplicate_event_is_reported_and_changes_nothing():
    customer = Customer()
    first = customer.does("product_view", event_id="web-1", product="sku-1")
    before = first.state.to_bytes()
    again = customer.does("product_view", at=DAY * 2, event_id="web-1", product="sku-1")
    assert again.duplicate is True
    assert again.commands == []
    assert again.held == []
    assert again.state.to_bytes() == before


def test_decide_never_mutates_the_state_it_is_given():
    customer = Customer()
    steps = [
        ("search", {"query": "tent"}),
        ("add_to_cart", {"product": "sku-1", "price": 10.0, "qty": 2}),
        ("consent", {"channel": "sms", "granted": True}),
        ("product_view", {"product": "sku-2"}),
        ("purchase", {"products": [{"id": "sku-1"}], "value": 20.0}),
        ("remove_from_cart", {"product": "sku-2"}),
        ("email_open", {}),
    ]
    for i, (type, props) in enumerate(steps):
        previous = customer.state
        before = previous.to_bytes() if previous is not None else None
        customer.does(type, at=i * 60.0, **props)
        if previous is not None:
            assert previous.to_bytes() == before, f"decide changed the given state on {type}"
            assert customer.state is not previous


def test_the_action_id_does_not_depend_on_when_the_decision_is_made():
    customer = Customer()
    event = customer.event("product_view", product="sku-1")
    early = decide(None, event, T0).commands[0]
    late = decide(None, event, T0 + 5 * HOUR).commands[0]
    assert early.action_id == late.action_id
    assert early.issued_at != late.issued_at


def test_action_ids_differ_per_trigger_event():
    customer = Customer()
    one = decide(None, customer.event("product_view", event_id="web-1", product="sku-1"), T0)
    two = decide(None, customer.event("product_view", event_id="web-2", product="sku-1"), T0)
    assert one.commands[0].action_id != two.commands[0].action_id


def test_every_command_of_one_decision_has_its_own_action_id():
    customer = Customer()
    customer.does("search", query="tent")
    decision = customer.buys("sku-1", at=60)
    ids = [c.action_id for c in decision.commands]
    assert len(ids) == 2
    assert len(set(ids)) == 2


# --- consent --------------------------------------------------------------------------------------


def test_opting_out_of_ads_holds_remarketing_back_for_lack_of_consent():
    customer = Customer()
    customer.does("consent", via="email", channel="ads", granted=False)
    decision = customer.does("search", at=60, query="tent")
    assert decision.commands == []
    assert held(decision) == [("remarketing_ad", "no_consent")]


def test_opting_out_of_ads_does_not_stop_email():
    customer = Customer()
    customer.does("consent", channel="ads", granted=False)
    assert actions(customer.buys("sku-1", at=60)) == [("email", "upsell")]


def test_a_global_opt_out_stops_running_remarketing_at_once_and_holds_everything_else():
    customer = Customer()
    customer.does("product_view", product="sku-1")
    assert actions(customer.does("consent", at=60, granted=False)) == [("ads", "remarketing_stop")]
    decision = customer.buys("sku-1", at=120)
    assert actions(decision) == []
    assert held(decision) == [("upsell", "no_consent")]
    assert held(customer.does("search", at=180, query="tent")) == [("remarketing_ad", "no_consent")]


def test_opting_out_of_ads_stops_every_running_remarketing_ad():
    customer = Customer()
    customer.does("search", query="tent")
    customer.does("product_view", at=10, product="sku-1")
    decision = customer.does("consent", at=60, channel="ads", granted=False)
    assert actions(decision) == [("ads", "remarketing_stop")]
    assert decision.commands[0].payload["subjects"] == ["product:sku-1", "query:tent"]
    assert actions(customer.does("consent", at=90, channel="ads", granted=False)) == []


def test_opting_back_in_to_one_channel_after_a_global_opt_out_allows_that_channel_only():
    customer = Customer()
    customer.does("consent", granted=False)
    assert held(customer.does("search", at=60, query="tent")) == [("remarketing_ad", "no_consent")]
    customer.does("consent", at=120, channel="ads", granted=True)
    assert actions(customer.does("search", at=180, query="stove")) == [("ads", "remarketing_ad")]
    assert customer.state.consent == {"*": False, "ads": True}


def test_a_global_yes_replaces_earlier_opt_outs_and_a_later_opt_out_still_counts():
    customer = Customer()
    customer.does("consent", channel="ads", granted=False)
    customer.does("consent", at=60, granted=True)
    assert customer.state.consent == {"*": True}
    assert actions(customer.does("search", at=120, query="tent")) == [("ads", "remarketing_ad")]
    customer.does("consent", at=180, channel="ads", granted=False)
    assert held(customer.does("search", at=240, query="stove")) == [("remarketing_ad", "no_consent")]


def test_a_global_yes_is_the_yes_a_channel_that_requires_consent_needs():
    customer = Customer(Policy(consent_required_channels=frozenset({"ads"})))
    customer.does("consent", granted=True)
    assert actions(customer.does("search", at=60, query="tent")) == [("ads", "remarketing_ad")]


def test_do_not_contact_still_beats_a_global_yes():
    customer = Customer()
    customer.does("consent", do_not_contact=True)
    customer.does("consent", at=60, granted=True)
    assert held(customer.does("search", at=120, query="tent")) == [("remarketing_ad", "do_not_contact")]


def test_a_channel_that_requires_consent_needs_an_explicit_opt_in():
    customer = Customer(Policy(consent_required_channels=frozenset({"ads"})))
    assert held(customer.does("search", query="tent")) == [("remarketing_ad", "no_consent")]
    customer.does("consent", at=60, channel="ads", granted=True)
    assert actions(customer.does("search", at=120, query="stove")) == [("ads", "remarketing_ad")]


def test_consent_may_be_given_for_several_channels_in_one_event():
    customer = Customer(Policy(consent_required_channels=frozenset({"ads", "email"})))
    customer.does("consent", channels={"ads": True, "email": False})
    assert actions(customer.does("search", at=60, query="tent")) == [("ads", "remarketing_ad")]
    assert held(customer.buys("sku-1", at=120)) == [("upsell", "no_consent")]


# --- frequency cap --------------------------------------------------------------------------------


def test_the_third_contact_on_a_channel_within_a_day_is_held_back_by_the_frequency_cap():
    customer = Customer(Policy(frequency_cap_per_day=2))
    assert actions(customer.does("product_view", product="sku-1")) == [("ads", "remarketing_ad")]
    assert actions(customer.does("product_view", at=HOUR, product="sku-2")) == [("ads", "remarketing_ad")]
    third = customer.does("product_view", at=2 * HOUR, product="sku-3")
    assert third.commands == []
    assert held(third) == [("remarketing_ad", "frequency_cap")]


def test_the_frequency_cap_counts_each_channel_separately():
    customer = Customer(Policy(frequency_cap_per_day=2))
    customer.does("product_view", product="sku-1")
    customer.does("product_view", at=60, product="sku-2")
    assert actions(customer.buys("sku-3", at=120)) == [("email", "upsell")]


def test_contact_is_allowed_again_once_the_day_has_passed():
    customer = Customer(Policy(frequency_cap_per_day=2))
    customer.does("product_view", product="sku-1")
    customer.does("product_view", at=HOUR, product="sku-2")
    customer.does("product_view", at=2 * HOUR, product="sku-3")
    later = customer.does("product_view", at=DAY + HOUR + 1, product="sku-3")
    assert actions(later) == [("ads", "remarketing_ad")]


def test_a_held_back_ad_is_not_remembered_as_sent():
    customer = Customer(Policy(frequency_cap_per_day=1))
    customer.does("product_view", product="sku-1")
    customer.does("product_view", at=60, product="sku-2")
    assert "product:sku-2" not in customer.state.remarketed


# --- state ----------------------------------------------------------------------------------------


def test_state_stays_bounded_however_many_events_arrive():
    policy = Policy()
    customer = Customer(policy)
    kinds = ["search", "product_view", "add_to_cart", "purchase", "email_open"]
    for i in range(1000):
        kind = kinds[i % len(kinds)]
        props = {"query": f"query {i}"} if kind == "search" else {"product": f"sku-{i}", "value": 1.0}
        customer.does(kind, at=i * 600.0, **props)
    state = customer.state
    assert state.events == 1000
    assert len(state.recent) == policy.recent_events
    assert len(state.seen_ids) == policy.dedupe_window
    assert len(state.interests) <= MAX_SUBJECTS
    assert len(state.remarketed) <= MAX_SUBJECTS
    assert len(state.purchased) <= MAX_SUBJECTS
    assert len(state.cart) <= MAX_SUBJECTS
    assert all(len(times) <= policy.frequency_cap_per_day for times in state.contacts.values())
    assert state.recent[-1]["event_id"] == "email_open-1000"


def test_new_channels_event_types_and_identifier_kinds_without_end_keep_the_state_bounded():
    """Each is an open set a channel can add to with every event: 400 consents of 300 new
    channels each grew one record past what Kafka stores, and the worker crashed on it."""
    customer = Customer()
    customer.does("purchase", product="sku-1", value=1.0)
    for i in range(200):
        customer.does(f"custom_{i}", at=i + 1.0, via=f"chan_{i}")
        event = replace(customer.event("page_view", at=i + 1.0), identifiers={f"kind_{i}_{j}": "x" for j in range(16)})
        customer.state = decide(customer.state, event, event.ts, customer.policy).state
    state = customer.state
    assert len(state.channel_counts) <= MAX_KINDS and set(state.last_touch) == set(state.channel_counts)
    assert len(state.type_counts) <= MAX_KINDS and state.type_counts["purchase"] == 1  # known types stay
    assert len(state.identifiers) == MAX_IDENTIFIER_KINDS and "kind_199_15" in state.identifiers
    assert state.channel_counts["web"] == 201  # the busiest channel stays


def test_consent_for_channels_without_end_stays_bounded_and_never_forgets_a_no():
    customer = Customer()
    customer.does("consent", channels={"ads": True, "email": False})
    for i in range(10):
        customer.does("consent", at=i + 1.0, channels={f"list_{i}_{j}": j % 2 == 0 for j in range(30)})
    state = customer.state
    assert len(state.consent) <= MAX_KINDS
    assert state.consent.get("email", state.consent.get("*")) is False
    assert state.consent.get("list_0_1", state.consent.get("*")) is False  # an early no, still a no
    assert state.consent.get("list_9_0") is True  # the latest yeses are kept


def test_state_survives_a_round_trip_through_bytes():
    customer = Customer()
    customer.does("search", query="tent")
    customer.does("add_to_cart", at=60, product="sku-1", price=10.0, qty=2)
    customer.does("consent", at=120, channel="sms", granted=True)
    customer.buys("sku-2", at=180)
    state = customer.state
    assert CustomerState.from_bytes(state.to_bytes()) == state


def test_state_from_bytes_ignores_fields_it_does_not_know():
    import msgpack

    raw = msgpack.packb({"key": "c-1", "events": 3, "field_from_the_future": [1]})
    assert CustomerState.from_bytes(raw) == CustomerState(key="c-1", events=3)


@pytest.mark.parametrize("gone", ["remove_from_cart", "purchase"])
def test_an_add_to_cart_that_arrives_after_the_item_left_the_cart_does_not_put_it_back(gone):
    """Added at 08:00, taken out (or bought) at 08:01, the add read last: the cart stays empty,
    so no ad chases it as being in the cart."""
    customer = Customer()
    if gone == "purchase":
        customer.buys("sku-1", at=60)
    else:
        customer.does(gone, at=60, product="sku-1")
    late = replace(customer.event("add_to_cart", at=90, product="sku-1", price=10.0), ts=T0)
    customer.state = decide(customer.state, late, T0 + 90, customer.policy).state
    assert customer.state.cart == {}
    customer.does("add_to_cart", at=120, product="sku-1", price=10.0)  # added again, after: in the cart
    assert list(customer.state.cart) == ["sku-1"]


def late_add(customer: Customer, product: str, dated: float) -> None:
    """An add_to_cart read now (after everything so far) but dated ``dated`` seconds after T0."""
    late = replace(customer.event("add_to_cart", at=dated, product=product, price=10.0), ts=T0 + dated)
    customer.state = decide(customer.state, late, customer.state.last_seen, customer.policy).state


def test_a_late_add_does_not_put_back_what_a_removal_of_several_products_took_out():
    """A ``remove_from_cart`` with a ``products`` list empties the cart of each of them, and
    an add of any of them dated before it, read after, leaves the cart as it is."""
    customer = Customer()
    customer.does("add_to_cart", at=10, product="sku-3", price=10.0)
    customer.does("remove_from_cart", at=60, products=[{"id": "sku-1"}, {"id": "sku-2"}])
    for product in ("sku-1", "sku-2"):
        late_add(customer, product, dated=30)
    assert list(customer.state.cart) == ["sku-3"]
    assert customer.state.removed_from_cart == {"sku-1": T0 + 60, "sku-2": T0 + 60}


def test_a_removal_older_than_the_recent_events_still_keeps_a_late_add_out():
    customer = Customer()
    customer.does("remove_from_cart", at=60, product="sku-1")
    for i in range(2 * customer.policy.recent_events):  # the removal is long out of the recent events
        customer.does("page_view", at=100 + i)
    late_add(customer, "sku-1", dated=30)
    assert customer.state.cart == {}


def test_an_add_dated_after_the_latest_removal_puts_the_product_back_and_one_between_does_not():
    customer = Customer()
    customer.does("remove_from_cart", at=60, product="sku-1")
    customer.does("page_view", at=100)
    late_add(customer, "sku-1", dated=90)  # after the removal, however late it is read
    assert list(customer.state.cart) == ["sku-1"]
    customer.does("remove_from_cart", at=200, product="sku-1")
    customer.does("remove_from_cart", at=150, product="sku-1")  # read late: the latest removal is kept
    late_add(customer, "sku-1", dated=180)
    assert customer.state.cart == {}
    assert customer.state.removed_from_cart == {"sku-1": T0 + 200}


def test_the_removals_remembered_are_the_latest_products_taken_out():
    customer = Customer()
    for i in range(MAX_SUBJECTS + 10):
        customer.does("remove_from_cart", at=i, product=f"sku-{i}")
    assert list(customer.state.removed_from_cart) == [f"sku-{i}" for i in range(10, MAX_SUBJECTS + 10)]


def test_a_purchase_after_a_removal_keeps_out_an_add_dated_between_them():
    customer = Customer()
    customer.does("remove_from_cart", at=60, product="sku-1")
    customer.buys("sku-1", at=120)
    late_add(customer, "sku-1", dated=90)  # after the removal, before the purchase
    assert customer.state.cart == {}
    customer.does("add_to_cart", at=300, product="sku-1", price=10.0)  # bought again later: in the cart
    assert list(customer.state.cart) == ["sku-1"]


def test_a_late_removal_dated_before_the_add_leaves_the_line_in():
    """The customer took the product out, then put it back: the removal, read last, took out
    the earlier line, not this one."""
    customer = Customer()
    customer.does("add_to_cart", at=100, product="sku-1", price=10.0)
    late = replace(customer.event("remove_from_cart", at=50, product="sku-1"), ts=T0 + 50)
    customer.state = decide(customer.state, late, customer.state.last_seen, customer.policy).state
    assert list(customer.state.cart) == ["sku-1"] and customer.state.cart_added == {"sku-1": T0 + 100}
    assert customer.state.removed_from_cart == {"sku-1": T0 + 50}
    customer.does("remove_from_cart", at=100, product="sku-1")  # one dated with the add takes it out
    assert customer.state.cart == {} and customer.state.cart_added == {}


def test_the_cart_remembers_when_each_line_was_added_and_forgets_it_with_the_line():
    customer = Customer()
    customer.does("add_to_cart", at=10, product="sku-1", price=10.0)
    customer.does("add_to_cart", at=20, product="sku-2", price=10.0)
    customer.does("add_to_cart", at=30, product="sku-1", price=10.0, qty=2)
    assert customer.state.cart_added == {"sku-2": T0 + 20, "sku-1": T0 + 30}
    customer.buys("sku-1", at=40)
    assert customer.state.cart_added == {"sku-2": T0 + 20}
    customer.does("purchase", at=50, value=5.0)  # no products named: the whole cart
    assert customer.state.cart == {} and customer.state.cart_added == {}
    for i in range(MAX_SUBJECTS + 5):
        customer.does("add_to_cart", at=100 + i, product=f"sku-{i}", price=1.0)
    assert (
        list(customer.state.cart_added) == list(customer.state.cart) == [f"sku-{i}" for i in range(5, MAX_SUBJECTS + 5)]
    )


def test_a_profile_stored_before_removals_were_kept_loads_with_none():
    import msgpack

    stored = CustomerState(key="c-1", cart={"sku-1": {"qty": 1, "price": 1.0}}).to_map()
    del stored["removed_from_cart"], stored["cart_added"]
    loaded = CustomerState.from_bytes(msgpack.packb(stored, use_bin_type=True))
    assert loaded.removed_from_cart == {} and loaded.cart == {"sku-1": {"qty": 1, "price": 1.0}}
    assert loaded.cart_added == {}
    loaded = decide(loaded, Customer().event("remove_from_cart", at=0, product="sku-1"), T0, Customer().policy).state
    assert loaded.cart == {}  # a line with no time is taken out by any removal


def test_a_profile_stored_before_removals_were_kept_finds_them_among_its_recent_events():
    """The version before read removals from the recent events: an upgrade keeps what it knew."""
    import msgpack

    customer = Customer()
    customer.does("add_to_cart", at=10, product="sku-1", price=10.0)
    customer.does("remove_from_cart", at=60, product="sku-1")
    customer.does("remove_from_cart", at=30, product="sku-2")
    stored = customer.state.to_map()
    del stored["removed_from_cart"], stored["cart_added"]
    customer.state = CustomerState.from_bytes(msgpack.packb(stored, use_bin_type=True))
    assert customer.state.removed_from_cart == {"sku-2": T0 + 30, "sku-1": T0 + 60}
    late_add(customer, "sku-1", dated=40)
    assert customer.state.cart == {}


def test_the_fold_remembers_the_cart_revenue_and_channels():
    customer = Customer()
    customer.does("add_to_cart", product="sku-1", price=10.0, qty=2)
    customer.does("add_to_cart", at=60, product="sku-2", price=5.0)
    customer.does("remove_from_cart", at=120, product="sku-2")
    customer.does("store_visit", at=180, via="store")
    customer.buys("sku-1", at=240, value=20.0)
    state = customer.state
    assert state.cart == {}
    assert state.purchases == 1
    assert state.revenue == 20.0
    assert state.currency == "EUR"
    assert state.channel_counts == {"web": 4, "store": 1}
    assert state.first_seen == T0
    assert state.last_seen == T0 + 240


# --- bugs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("qty", [math.inf, math.nan], ids=["inf", "nan"])
def test_a_non_finite_cart_quantity_does_not_crash_the_decision(qty):
    Customer().does("add_to_cart", product="sku-1", qty=qty)


def test_a_huge_cart_quantity_still_leaves_a_storable_state():
    Customer().does("add_to_cart", product="sku-1", qty=1e20).state.to_bytes()


def test_a_purchase_with_a_nan_value_does_not_poison_revenue():
    customer = Customer()
    customer.does("purchase", products=[{"id": "sku-1"}], value=math.nan)
    customer.buys("sku-2", at=60, value=20.0)
    assert math.isfinite(customer.state.revenue)
    json.dumps(customer.state.to_dict(), allow_nan=False)


def test_a_remarketing_stop_after_many_searches_still_matches_the_command_contract():
    customer = Customer()
    for i in range(12):  # three ads a day for four days: within the default frequency cap
        customer.does("search", at=(i // 3) * (DAY + 1) + i, query=f"{i:02d} " + "lightweight tent " * 5)
    stop = customer.buys("sku-1", at=5 * DAY).commands[0]
    assert stop.action == "remarketing_stop"
    assert len(stop.payload["subjects"]) == 12
    ActionCommand.model_validate(stop.to_wire())


def test_a_command_for_an_anonymous_customer_with_a_long_identifier_matches_the_command_contract():
    key = "loyalty_id:" + "x" * 256  # a valid identifier: kind and value within ChannelEvent's limits
    ad = Customer(customer_id=None, key=key).does("search", query="tent").commands[0]
    ActionCommand.model_validate(ad.to_wire())
