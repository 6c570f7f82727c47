"""next_best_actions(): what a channel should do with this customer now, best first."""

from __future__ import annotations

import json

from stories import T0, Customer

from orchestrator.core.nba import CHANNELS, next_best_actions
from orchestrator.core.policy import Policy
from orchestrator.core.state import CustomerState

DAY = 86400.0
QUIET = Policy(rules=frozenset())  # no reflex commands, so no channel is at its frequency cap


def shopper(policy: Policy = QUIET, customer_id: str = "c-1") -> Customer:
    return Customer(None, customer_id=customer_id, policy=policy)  # type: ignore[arg-type]


def actions(ranked: dict, channel: str) -> list[str]:
    return [a["action"] for a in ranked[channel]]


def test_items_left_in_the_cart_come_first_with_the_cart_discount():
    c = shopper()
    c.does("search", 0, query="tent")
    c.does("add_to_cart", 10, product="sku-1", price=20.0, qty=2)
    ranked = next_best_actions(c.state, T0 + 60, Policy(cart_discount_percent=20))
    top = ranked["web"][0]
    assert top["action"] == "cart_reminder"
    assert top["payload"]["products"] == ["sku-1"]
    assert top["payload"]["cart_value"] == 40.0
    assert top["payload"]["incentive"]["percent"] == 20
    assert "cart" in top["reason"] and "20% off" in top["reason"]
    assert ranked["ads"][0]["action"] == "remarketing_ad"  # the same fact, in the ads channel's words


def test_interests_not_bought_are_recommended_and_remarketed_newest_first():
    c = shopper()
    c.does("search", 0, query="tent")
    c.does("product_view", 3600, product="sku-9")
    ranked = next_best_actions(c.state, T0 + 7200, Policy(remarketing_discount_percent=12))
    assert [a["payload"] for a in ranked["web"][:2]] == [{"product": "sku-9"}, {"query": "tent"}]
    assert actions(ranked, "web") == ["recommend", "recommend", "welcome"]  # known, not yet engaged
    ad = ranked["ads"][0]
    assert ad["action"] == "remarketing_ad"
    assert ad["payload"]["incentive"]["percent"] == 12
    assert "has not bought" in ad["reason"]


def test_old_interests_are_forgotten():
    c = shopper()
    c.does("search", 0, query="tent")
    ranked = next_best_actions(c.state, T0 + 40 * DAY, QUIET)
    assert all(a["action"] not in ("recommend", "remarketing_ad") for acts in ranked.values() for a in acts)


def test_a_recent_purchase_brings_an_upsell_and_nothing_for_what_was_bought():
    c = shopper()
    c.does("product_view", 0, product="sku-1")
    c.buys("sku-1", at=60)
    ranked = next_best_actions(c.state, T0 + 120, QUIET)
    top = ranked["email"][0]
    assert top["action"] == "upsell"
    assert top["payload"]["purchased"] == ["sku-1"]
    assert not any(a["action"] in ("recommend", "remarketing_ad", "cart_reminder") for a in ranked["web"])


def test_a_repeat_customer_is_thanked_and_asked_for_nothing():
    c = shopper()
    for i, sku in enumerate(("sku-1", "sku-2", "sku-3")):
        c.buys(sku, at=i * DAY)
    ranked = next_best_actions(c.state, T0 + 2 * DAY + 60, QUIET)
    thanks = ranked["store"][0]
    assert thanks["action"] == "thank_you"
    assert thanks["payload"] == {"purchases": 3, "call_to_action": None}
    assert "ask for nothing" in thanks["reason"]
    assert "thank_you" not in actions(ranked, "ads")  # an ad is no thank-you
    assert "thank_you" in actions(ranked, "email")


def test_two_purchases_are_not_yet_a_thank_you():
    c = shopper()
    c.buys("sku-1", at=0)
    c.buys("sku-2", at=60)
    ranked = next_best_actions(c.state, T0 + 120, QUIET)
    assert all(a["action"] != "thank_you" for acts in ranked.values() for a in acts)


def test_a_lapsed_customer_gets_a_win_back_first():
    c = shopper()
    c.buys("sku-1", at=0)
    ranked = next_best_actions(c.state, T0 + 100 * DAY, QUIET)
    top = ranked["email"][0]
    assert top["action"] == "win_back"
    assert top["payload"]["days_quiet"] == 100
    assert "upsell" not in actions(ranked, "email")  # that purchase is long past


def test_an_anonymous_visitor_gets_a_sign_up_offer_where_they_are_and_no_email():
    state = CustomerState(key="cookie:abc", identifiers={"cookie": "abc"}, last_touch={"web": T0})
    ranked = next_best_actions(state, T0, QUIET)
    assert actions(ranked, "web") == ["sign_up_offer"]
    assert "email" not in ranked  # no address to send it to (the contact policy's no_address)


def test_a_prospect_is_welcomed():
    c = shopper()
    c.does("page_view", 0)
    ranked = next_best_actions(c.state, T0 + 60, QUIET)
    assert actions(ranked, "email") == ["welcome"]


def test_a_prospect_s_welcome_does_not_claim_a_sign_up():
    """A prospect is known by a customer id and has done nothing engaging; a ``signup`` is
    engaging, so whoever gets this welcome has not been seen signing up."""
    c = shopper()
    c.does("search", 0, query="tent")
    [welcome] = [a for a in next_best_actions(c.state, T0 + 60, QUIET)["email"] if a["action"] == "welcome"]
    assert welcome["reason"].startswith("known by a customer id but not engaged yet")
    assert "signed up" not in welcome["reason"]


def test_with_nothing_to_go_on_inbound_channels_personalise_or_listen_and_outbound_ones_stay_silent():
    c = shopper()
    c.does("email_open", 0)  # engaged, but no subject to act on
    ranked = next_best_actions(c.state, T0 + 60, QUIET)
    assert actions(ranked, "web") == ["personalised_content"]
    assert actions(ranked, "support") == ["listen"]
    assert ranked["email"] == [] and ranked["ads"] == []


def test_channels_without_consent_are_left_out():
    c = shopper()
    c.does("add_to_cart", 0, product="sku-1")
    c.does("consent", 10, channel="email", granted=False)
    ranked = next_best_actions(c.state, T0 + 60, QUIET)
    assert "email" not in ranked
    assert ranked["web"]
    c.does("consent", 20, granted=False)  # every channel
    assert next_best_actions(c.state, T0 + 60, QUIET) == {}


def test_do_not_contact_leaves_no_channel():
    c = shopper()
    c.does("add_to_cart", 0, product="sku-1")
    c.does("consent", 10, do_not_contact=True)
    assert next_best_actions(c.state, T0 + 60, QUIET) == {}


def test_opt_in_channels_need_an_explicit_yes():
    c = shopper()
    c.does("add_to_cart", 0, product="sku-1")
    policy = Policy(rules=frozenset(), consent_required_channels=frozenset({"email"}))
    assert "email" not in next_best_actions(c.state, T0 + 60, policy)
    c.does("consent", 10, channel="email", granted=True)
    assert next_best_actions(c.state, T0 + 60, policy)["email"]


def test_an_outbound_channel_at_its_frequency_cap_gets_nothing_but_the_web_page_still_answers():
    c = shopper(policy=Policy())  # the reflex rules send remarketing ads
    for i, query in enumerate(("tent", "stove", "lamp")):
        c.does("search", i, query=query)
    ranked = next_best_actions(c.state, T0 + 60, Policy())
    assert "ads" not in ranked
    assert ranked["web"]
    assert "ads" in next_best_actions(c.state, T0 + 2 * DAY, Policy())  # a day later the cap has passed


def test_touched_channels_join_the_fixed_set():
    c = shopper()
    c.does("product_view", 0, via="social", product="sku-1")
    ranked = next_best_actions(c.state, T0 + 60, QUIET)
    assert list(ranked) == [*CHANNELS, "social"]
    assert actions(ranked, "social") == ["remarketing_ad"]


def test_preferred_channels_are_boosted():
    c = shopper()
    c.does("product_view", 0, product="sku-1")
    plain = next_best_actions(c.state, T0 + 60, QUIET)
    c.does("preferences", 30, preferred_channels=["email"])
    boosted = next_best_actions(c.state, T0 + 60, QUIET)
    assert boosted["email"][0]["score"] > plain["email"][0]["score"]
    assert boosted["web"] == plain["web"]


def test_scores_are_ranked_rounded_and_between_0_and_1():
    c = shopper()
    c.does("search", 0, query="tent")
    c.does("add_to_cart", 10, product="sku-1", price=9.99)
    c.buys("sku-7", at=20)
    for acts in next_best_actions(c.state, T0 + 3 * DAY, QUIET).values():
        scores = [a["score"] for a in acts]
        assert scores == sorted(scores, reverse=True)
        assert all(0 <= s <= 1 and s == round(s, 3) for s in scores)
        assert all(a["reason"] and isinstance(a["payload"], dict) for a in acts)


def test_the_same_state_and_time_give_the_same_answer():
    c = shopper()
    c.does("search", 0, query="tent")
    c.does("product_view", 0, product="sku-2")  # same time: ties are broken by subject
    c.does("add_to_cart", 10, product="sku-1")
    first = json.dumps(next_best_actions(c.state, T0 + 60, QUIET))
    copy = CustomerState.from_bytes(c.state.to_bytes())
    assert json.dumps(next_best_actions(copy, T0 + 60, QUIET)) == first
    assert json.dumps(next_best_actions(c.state, T0 + 60, QUIET)) == first


def test_the_state_is_not_touched():
    c = shopper()
    c.does("add_to_cart", 0, product="sku-1")
    before = c.state.to_bytes()
    next_best_actions(c.state, T0 + 60, QUIET)
    assert c.state.to_bytes() == before


def test_an_anonymous_profile_known_by_email_may_get_the_offer_by_email():
    state = CustomerState(key="email:a@b.c", identifiers={"email": "a@b.c"}, last_touch={"web": T0})
    assert actions(next_best_actions(state, T0, QUIET), "email") == ["sign_up_offer"]
