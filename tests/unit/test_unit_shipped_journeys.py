"""The six shipped journeys (journeys/*.yaml), each told as a short story of one customer."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import stories
from stories import T0

from orchestrator.core.commands import Command
from orchestrator.core.decide import Decision
from orchestrator.core.policy import Policy
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import load_dir

SHIPPED = Path(__file__).resolve().parents[2] / "journeys"
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
ALL = load_dir(SHIPPED)[0]


def shipped(*ids: str, max_active: int = 3) -> Engine:
    """An engine with the named shipped journeys (all six when none are named)."""
    chosen = [j for j in ALL if not ids or j.id in ids]
    assert len(chosen) == (len(ids) or 6)
    return Engine(Catalogue.of(chosen), max_active=max_active)


class Customer(stories.Customer):
    @property
    def journeys(self) -> set[str]:
        return set(self.state.journeys) if self.state is not None else set()


def sent(commands: list[Command]) -> list[tuple[str, str, float]]:
    """(journey, action, when it was issued relative to T0)."""
    return [(c.journey, c.action, c.issued_at - T0) for c in commands]


def outcomes(decision: Decision) -> list[tuple[str, str, str]]:
    return [(o.kind, o.journey, o.reason) for o in decision.outcomes]


def local(text: str, zone: str) -> float:
    """Seconds after T0 of a wall-clock time in ``zone``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() - T0


# --- remarketing_after_browse: a day to think it over, then an ad ---------------------------------


def test_a_browser_who_does_not_buy_sees_a_remarketing_ad_a_day_later():
    customer = Customer(shipped("remarketing_after_browse"))
    assert outcomes(customer.does("product_view", 0, product="sku-tent-2p")) == [
        ("enter", "remarketing_after_browse", "")
    ]
    assert customer.next_wake == 24 * HOUR
    assert customer.timer_until(24 * HOUR - 1) == []
    ads = customer.timer_until(24 * HOUR)
    assert sent(ads) == [("remarketing_after_browse", "remarketing_ad", 24 * HOUR)]
    ad = ads[0]
    assert ad.channel == "ads"
    assert ad.payload == {"product": "sku-tent-2p", "query": "", "incentive": {"type": "discount", "percent": 10}}
    assert "journey remarketing_after_browse v4, step remarketing_ad" in ad.reason
    assert customer.journeys == set()


def test_a_purchase_within_a_week_of_the_ad_is_the_remarketing_journey_s_conversion():
    customer = Customer(shipped("remarketing_after_browse"))
    customer.does("product_view", 0, product="sku-tent-2p")
    customer.timer_until(24 * HOUR)
    bought = customer.buys("sku-tent-2p", at=3 * DAY)
    assert ("convert", "remarketing_after_browse", "after_exit") in outcomes(bought)
    later = Customer(shipped("remarketing_after_browse"))
    later.does("product_view", 0, product="sku-tent-2p")
    later.timer_until(24 * HOUR)
    assert not [o for o in later.buys("sku-tent-2p", at=9 * DAY).outcomes if o.kind == "convert"]


def test_a_search_is_remarketed_by_its_query():
    customer = Customer(shipped("remarketing_after_browse"))
    customer.does("search", 0, via="search", query="trail shoes")
    (ad,) = customer.timer_until(DAY)
    assert ad.payload["query"] == "trail shoes"
    assert ad.payload["product"] == ""


def test_a_browser_who_buys_at_hour_five_sees_no_ad():
    customer = Customer(shipped("remarketing_after_browse"))
    customer.does("product_view", 0, product="sku-tent-2p")
    decision = customer.buys("sku-tent-2p", at=5 * HOUR)
    assert decision.commands == []
    assert outcomes(decision) == [
        ("convert", "remarketing_after_browse", ""),
        ("exit", "remarketing_after_browse", "goal"),
    ]
    assert customer.next_wake is None
    assert customer.wakes(24 * HOUR).commands == []


def test_browsing_without_a_product_or_query_does_not_start_remarketing():
    customer = Customer(shipped("remarketing_after_browse"))
    assert customer.does("search", 0, via="search", campaign="autumn").outcomes == []
    assert customer.journeys == set()


@pytest.mark.parametrize(
    "props",
    [{"query": ""}, {"query": "   "}, {"query": "\u00a0\t"}, {"product": ""}, {"product": None}, {"query": 42}],
    ids=["empty query", "blank query", "unicode blank query", "empty product", "null product", "number query"],
)
def test_a_search_or_view_of_nothing_starts_no_remarketing_and_sends_no_ad(props):
    """An incentive ad about nothing is a broadcast discount, and no purchase could stop it: the
    journey reads a subject as the built-in rule does (orchestrator.core.fold.subject_of)."""
    customer = Customer(shipped("remarketing_after_browse"))
    decision = customer.does("search", 0, via="search", **props)
    assert outcomes(decision) == []
    assert customer.journeys == set()
    assert customer.timer_until(2 * DAY) == []


def test_a_view_with_a_null_product_and_a_query_is_remarketed_by_its_query():
    customer = Customer(shipped("remarketing_after_browse"))
    assert outcomes(customer.does("product_view", 0, product=None, query="tent")) == [
        ("enter", "remarketing_after_browse", "")
    ]
    (ad,) = customer.timer_until(DAY)
    assert (ad.payload["product"], ad.payload["query"]) == ("", "tent")


def test_a_product_given_as_a_number_is_remarketed_under_its_id():
    customer = Customer(shipped("remarketing_after_browse"))
    customer.does("product_view", 0, product=1234)
    (ad,) = customer.timer_until(DAY)
    assert ad.payload["product"] == "1234"


def test_browsing_again_within_the_week_after_an_ad_does_not_start_another_one():
    customer = Customer(shipped("remarketing_after_browse"))
    customer.does("product_view", 0, product="sku-1")
    customer.timer_until(DAY)  # the ad, and the journey ends
    assert customer.does("product_view", 3 * DAY, product="sku-2").outcomes == []
    assert outcomes(customer.does("product_view", 8 * DAY, product="sku-2")) == [
        ("enter", "remarketing_after_browse", "")
    ]


def test_a_product_already_bought_is_not_remarketed_but_another_one_is():
    customer = Customer(shipped("remarketing_after_browse"))
    customer.buys("sku-9", at=0)
    assert customer.does("product_view", 2 * DAY, product="sku-9").outcomes == []
    assert outcomes(customer.does("product_view", 2 * DAY, product="sku-10")) == [
        ("enter", "remarketing_after_browse", "")
    ]


def test_buying_what_a_journey_s_ad_shows_stops_the_ad_without_the_built_in_rules():
    customer = Customer(shipped("remarketing_after_browse"))
    customer.does("product_view", 0, product="sku-9")
    customer.does("search", HOUR, via="search", query="tent")  # within the journey: no second entry
    customer.timer_until(DAY)
    (stop,) = customer.buys("sku-9", at=3 * DAY).commands
    assert (stop.channel, stop.action, stop.payload) == ("ads", "remarketing_stop", {"subjects": ["product:sku-9"]})
    assert customer.buys("sku-9", at=4 * DAY).commands == []  # stopped once


def test_withdrawing_consent_for_ads_stops_a_journey_s_ads():
    customer = Customer(shipped("remarketing_after_browse"))
    customer.does("search", 0, via="search", query="trail shoes")
    customer.timer_until(DAY)
    (stop,) = customer.does("consent", 2 * DAY, channel="ads", granted=False).commands
    assert stop.action == "remarketing_stop" and stop.payload == {"subjects": ["query:trail shoes"]}


def test_a_journey_s_ad_for_a_search_counts_for_the_rule_s_cooldown_however_the_search_is_written():
    """The rule spells a search as its interests do ("query:tent"); a journey's ad for "Tent "
    is the same subject, so the rule does not chase it again the next day."""
    customer = Customer(shipped("remarketing_after_browse"), policy=Policy())
    customer.does("search", 0, via="search", query="Tent ")
    (ad,) = customer.timer_until(DAY)
    assert ad.journey == "remarketing_after_browse"
    again = customer.does("search", DAY + HOUR, via="search", query="Tent")
    assert [c.action for c in again.commands] == []
    assert [(h.command.action, h.reason) for h in again.held] == [("remarketing_ad", "cooldown")]
    assert list(customer.state.remarketed) == ["query:tent"]


# --- cart_abandoned: a reminder after an hour, an ad after a day ----------------------------------


def test_a_cart_left_behind_gets_a_reminder_after_an_hour_and_an_ad_after_a_day():
    customer = Customer(shipped("cart_abandoned"))
    customer.does("add_to_cart", 0, product="sku-daypack", price=89.0, qty=1)
    assert customer.next_wake == HOUR
    (reminder,) = customer.timer_until(HOUR)
    assert sent([reminder]) == [("cart_abandoned", "cart_reminder", HOUR)]
    assert reminder.channel == "email"
    assert reminder.payload == {"items": {"sku-daypack": {"qty": 1, "price": 89.0}}}
    assert customer.next_wake == 24 * HOUR
    assert customer.timer_until(24 * HOUR - 1) == []
    (ad,) = customer.timer_until(24 * HOUR)
    assert sent([ad]) == [("cart_abandoned", "remarketing_ad", 24 * HOUR)]
    assert ad.channel == "ads"
    assert ad.payload == {"product": "sku-daypack", "in_cart": True, "incentive": {"type": "discount", "percent": 15}}
    assert customer.journeys == set()


def test_a_purchase_at_thirty_minutes_stops_the_cart_journey_before_anything_is_sent():
    customer = Customer(shipped("cart_abandoned"))
    customer.does("add_to_cart", 0, product="sku-daypack", price=89.0)
    decision = customer.buys("sku-daypack", at=30 * MINUTE)
    assert outcomes(decision) == [("convert", "cart_abandoned", ""), ("exit", "cart_abandoned", "goal")]
    assert customer.next_wake is None
    assert customer.timer_until(2 * DAY) == []
    assert customer.wakes(HOUR).commands == []


def test_emptying_the_cart_ends_the_journey_but_removing_one_of_two_items_does_not():
    customer = Customer(shipped("cart_abandoned"))
    customer.does("add_to_cart", 0, product="sku-1", price=10.0)
    customer.does("add_to_cart", MINUTE, product="sku-2", price=20.0)
    assert customer.does("remove_from_cart", 10 * MINUTE, product="sku-1").outcomes == []
    decision = customer.does("remove_from_cart", 20 * MINUTE, product="sku-2")
    assert outcomes(decision) == [("exit", "cart_abandoned", "exit_on:remove_from_cart")]
    assert customer.timer_until(2 * DAY) == []


def test_the_reminder_lists_what_is_in_the_cart_when_it_goes_out():
    customer = Customer(shipped("cart_abandoned"))
    customer.does("add_to_cart", 0, product="sku-1", price=10.0)
    customer.does("add_to_cart", 20 * MINUTE, product="sku-2", price=20.0, qty=2)
    (reminder,) = customer.timer_until(HOUR)
    assert reminder.payload["items"] == {"sku-1": {"qty": 1, "price": 10.0}, "sku-2": {"qty": 2, "price": 20.0}}


@pytest.mark.parametrize(("removed", "advertised"), [("sku-z", "sku-c"), ("sku-q", "sku-z"), (None, "sku-z")])
def test_the_ad_shows_a_product_still_in_the_cart(removed: str | None, advertised: str):
    """The product that started the journey while it is in the cart; once taken out, the
    first left by id (the same in every run), never an "in your cart" ad for what is gone."""
    customer = Customer(shipped("cart_abandoned"))
    for i, product in enumerate(("sku-z", "sku-q", "sku-c")):
        customer.does("add_to_cart", i * MINUTE, product=product, price=10.0)
    if removed:
        customer.does("remove_from_cart", 10 * MINUTE, product=removed)
    *_, ad = customer.timer_until(DAY)
    assert ad.action == "remarketing_ad" and ad.payload["product"] == advertised


def test_a_new_cart_within_three_days_of_the_last_journey_is_left_alone():
    customer = Customer(shipped("cart_abandoned"))
    customer.does("add_to_cart", 0, product="sku-1")
    customer.timer_until(DAY)  # reminder, ad, and the journey ends at hour 24
    assert customer.does("add_to_cart", 2 * DAY, product="sku-2").outcomes == []
    assert outcomes(customer.does("add_to_cart", 4 * DAY, product="sku-3")) == [("enter", "cart_abandoned", "")]


# --- post_purchase: an upsell at three days, retention content at thirty --------------------------


def test_a_buyer_gets_an_upsell_after_three_days_and_retention_content_after_thirty():
    customer = Customer(shipped("post_purchase"))
    customer.buys("sku-boots", at=0, value=129.0)
    assert customer.next_wake == 3 * DAY
    (upsell,) = customer.timer_until(3 * DAY)
    assert sent([upsell]) == [("post_purchase", "upsell", 3 * DAY)]
    assert upsell.payload == {
        "purchased": [{"id": "sku-boots", "price": 129.0, "qty": 1}],
        "offer": "complementary_products",
    }
    assert customer.next_wake == 30 * DAY
    assert customer.timer_until(30 * DAY - 1) == []
    (retention,) = customer.timer_until(30 * DAY)
    assert sent([retention]) == [("post_purchase", "retention_content", 30 * DAY)]
    assert retention.payload == {"content": "care_and_tips"}
    assert customer.journeys == set()


def test_a_purchase_without_a_product_list_still_gets_an_upsell():
    customer = Customer(shipped("post_purchase"))
    customer.does("purchase", 0, value=20.0)
    (upsell,) = customer.timer_until(3 * DAY)
    assert upsell.payload["purchased"] == []


def test_a_second_purchase_during_the_journey_does_not_restart_it():
    customer = Customer(shipped("post_purchase"))
    customer.buys("sku-1", at=0)
    assert customer.buys("sku-2", at=DAY).outcomes == []
    assert sent(customer.timer_until(3 * DAY)) == [("post_purchase", "upsell", 3 * DAY)]


def test_opting_out_of_email_ends_the_post_purchase_journey():
    customer = Customer(shipped("post_purchase"))
    customer.buys("sku-1", at=0)
    decision = customer.does("consent", DAY, via="email", channel="email", granted=False)
    assert outcomes(decision) == [("exit", "post_purchase", "exit_on:consent")]
    assert customer.timer_until(40 * DAY) == []


def test_an_upsell_that_fell_due_before_an_opt_out_is_held_when_the_opt_out_reveals_it():
    """The timer was late: the upsell was due at day 3, the customer opted out of email at
    day 4, and both reach decide() together. Nothing leaves for a channel without consent
    in the final state (the hard rule), so the overdue upsell is held back, not sent."""
    customer = Customer(shipped("post_purchase"))
    customer.buys("sku-1", at=0)
    decision = customer.does("consent", 4 * DAY, via="email", channel="email", granted=False)
    assert decision.commands == []
    assert [(h.command.action, h.reason) for h in decision.held] == [("upsell", "no_consent")]
    assert outcomes(decision)[-1] == ("exit", "post_purchase", "exit_on:consent")


def test_a_late_goal_still_ends_a_journey_that_is_running():
    customer = Customer(shipped("remarketing_after_browse"))
    customer.does("product_view", 10 * 3600, product="sku-1")
    decision = customer.buys("sku-1", at=2 * 3600)  # happened before the view, arrives after it
    assert ("exit", "remarketing_after_browse", "goal") in outcomes(decision)
    assert customer.timer_until(3 * DAY) == []


def test_a_late_event_keeps_first_and_last_seen_in_order():
    customer = Customer(shipped("remarketing_after_browse"))
    customer.does("page_view", 10 * 3600)
    customer.does("page_view", 2 * 3600)
    assert customer.state is not None
    assert (customer.state.first_seen, customer.state.last_seen) == (T0 + 2 * 3600, T0 + 10 * 3600)


def test_a_purchase_after_the_journey_starts_it_again():
    customer = Customer(shipped("post_purchase"))
    customer.buys("sku-1", at=0)
    customer.timer_until(30 * DAY)
    assert outcomes(customer.buys("sku-2", at=45 * DAY)) == [("enter", "post_purchase", "")]
    assert sent(customer.timer_until(48 * DAY)) == [("post_purchase", "upsell", 48 * DAY)]


# --- repeat_thank_you: the third purchase, thanked at ten in the morning --------------------------


def test_only_the_third_purchase_is_thanked_at_ten_in_the_morning_local_time():
    zone = "America/New_York"
    customer = Customer(shipped("repeat_thank_you"), timezone=zone)
    assert customer.buys("sku-1", at=0).outcomes == []
    assert customer.buys("sku-2", at=10 * DAY).outcomes == []
    third = local("2027-02-03 22:30", zone)  # late in the evening in New York
    assert outcomes(customer.buys("sku-3", at=third)) == [("enter", "repeat_thank_you", "")]
    ten_tomorrow = local("2027-02-04 10:00", zone)
    assert customer.next_wake == ten_tomorrow
    assert customer.timer_until(ten_tomorrow - 1) == []
    (thanks,) = customer.timer_until(ten_tomorrow)
    assert sent([thanks]) == [("repeat_thank_you", "thank_you", ten_tomorrow)]
    assert thanks.payload == {"gift": "surprise_sample", "asks_for_nothing": True}
    assert customer.journeys == set()
    assert customer.buys("sku-4", at=30 * DAY).outcomes == []


def test_a_third_purchase_early_in_the_morning_is_thanked_the_same_day():
    zone = "Asia/Tokyo"
    customer = Customer(shipped("repeat_thank_you"), timezone=zone)
    customer.buys("sku-1", at=0)
    customer.buys("sku-2", at=DAY)
    customer.buys("sku-3", at=local("2027-01-20 07:15", zone))
    assert customer.next_wake == local("2027-01-20 10:00", zone)


def test_the_thank_you_is_at_ten_local_time_across_a_change_to_summer_time():
    zone = "Europe/Paris"
    customer = Customer(shipped("repeat_thank_you"), timezone=zone)
    customer.buys("sku-1", at=0)
    customer.buys("sku-2", at=DAY)
    customer.buys("sku-3", at=local("2027-03-27 18:00", zone))  # the clocks go forward that night
    (thanks,) = customer.timer_until(80 * DAY)
    assert thanks.issued_at == T0 + local("2027-03-28 10:00", zone)
    assert datetime.fromtimestamp(thanks.issued_at, ZoneInfo(zone)).strftime("%H:%M %Z") == "10:00 CEST"


# --- win_back: ninety quiet days ------------------------------------------------------------------


def test_a_customer_quiet_for_ninety_days_gets_a_win_back_message():
    customer = Customer(shipped("win_back"))
    customer.buys("sku-1", at=0)
    assert customer.next_wake == 90 * DAY
    assert customer.timer_until(90 * DAY - 1) == []
    (message,) = customer.timer_until(90 * DAY)
    assert sent([message]) == [("win_back", "win_back", 90 * DAY)]
    assert message.payload == {"offer": "welcome_back", "last_seen": T0}
    assert customer.journeys == set()


def test_coming_back_at_day_sixty_restarts_the_ninety_days():
    customer = Customer(shipped("win_back"))
    customer.buys("sku-1", at=0)
    assert customer.does("page_view", 60 * DAY).commands == []
    assert customer.next_wake == 150 * DAY
    assert customer.wakes(90 * DAY).commands == []
    assert customer.timer_until(150 * DAY - 1) == []
    (message,) = customer.timer_until(150 * DAY)
    assert message.issued_at == T0 + 150 * DAY
    assert message.payload["last_seen"] == T0 + 60 * DAY


def test_only_a_sign_of_life_restarts_the_ninety_days():
    customer = Customer(shipped("win_back"))
    customer.buys("sku-1", at=0)
    customer.does("email_open", 60 * DAY, via="email")  # opening a newsletter is not coming back
    assert customer.next_wake == 90 * DAY


def test_a_win_back_that_worked_can_happen_again():
    customer = Customer(shipped("win_back"))
    customer.buys("sku-1", at=0)
    customer.timer_until(90 * DAY)
    assert outcomes(customer.buys("sku-2", at=100 * DAY)) == [("enter", "win_back", "")]
    assert customer.next_wake == 190 * DAY


# --- welcome: hello now, an offer in your variant after two days, tips after five more ------------


def welcome_customer(variant: str) -> Customer:
    """A new customer whose id lands in ``variant`` of the welcome offer test."""
    for i in range(500):
        customer = Customer(shipped("welcome"), customer_id=f"new-{i}")
        customer.does("signup", 0)
        customer.timer_until(2 * DAY)
        if customer.state.journeys["welcome"]["variant"] == variant:
            return Customer(shipped("welcome"), customer_id=f"new-{i}")
    raise AssertionError(f"no customer in variant {variant}")


def test_a_new_sign_up_is_welcomed_at_once():
    customer = Customer(shipped("welcome"))
    decision = customer.does("signup", 0)
    assert sent(decision.commands) == [("welcome", "welcome", 0.0)]
    assert decision.commands[0].payload == {"template": "welcome_1"}
    assert customer.next_wake == 2 * DAY


@pytest.mark.parametrize(
    ("variant", "payload"),
    [("discount", {"offer": "discount", "percent": 10}), ("free_shipping", {"offer": "free_shipping"})],
)
def test_a_browsing_newcomer_gets_their_variant_s_offer_after_two_days_and_tips_after_five_more(variant, payload):
    customer = welcome_customer(variant)
    customer.does("signup", 0)
    customer.does("page_view", 3 * HOUR)
    customer.does("product_view", DAY, product="sku-1")
    (offer,) = customer.timer_until(2 * DAY)
    assert sent([offer]) == [("welcome", "welcome_offer", 2 * DAY)]
    assert offer.payload == payload
    assert offer.reason.endswith(f", variant {variant})")
    customer.does("page_view", 4 * DAY)
    assert customer.next_wake == 7 * DAY
    (tips,) = customer.timer_until(7 * DAY)
    assert sent([tips]) == [("welcome", "welcome_tips", 7 * DAY)]
    assert tips.payload == {"template": "welcome_tips"}
    assert customer.journeys == set()


def test_a_newcomer_who_buys_gets_no_tips():
    customer = welcome_customer("discount")
    customer.does("signup", 0)
    customer.does("page_view", HOUR)
    customer.does("product_view", 2 * HOUR, product="sku-1")
    customer.timer_until(2 * DAY)
    decision = customer.buys("sku-1", at=4 * DAY)
    assert outcomes(decision) == [("convert", "welcome", ""), ("exit", "welcome", "goal")]
    assert customer.timer_until(30 * DAY) == []


def test_a_newcomer_who_never_came_back_gets_the_offer_but_no_tips():
    customer = welcome_customer("free_shipping")
    customer.does("signup", 0)
    assert sent(customer.timer_until(30 * DAY)) == [("welcome", "welcome_offer", 2 * DAY)]
    assert customer.state.journey_log["welcome"]["last_exit"] == T0 + 7 * DAY


def test_the_holdout_is_welcomed_but_gets_no_offer_and_no_tips():
    customer = welcome_customer("holdout")
    assert sent(customer.does("signup", 0).commands) == [("welcome", "welcome", 0.0)]
    for hour in (1, 2, 3):  # browsing enough to be sent tips, were they not in the holdout
        customer.does("page_view", hour * HOUR)
    offer = customer.wakes(2 * DAY)
    assert offer.commands == []
    assert [(h.command.action, h.reason) for h in offer.held] == [("welcome_offer", "holdout")]
    tips = customer.wakes(7 * DAY)
    assert [(h.command.action, h.reason) for h in tips.held] == [("welcome_tips", "holdout")]
    assert outcomes(tips) == [("exit", "welcome", "completed")]


def test_a_second_sign_up_is_not_welcomed_again():
    customer = Customer(shipped("welcome"))
    customer.does("signup", 0)
    customer.timer_until(30 * DAY)
    assert customer.does("signup", 40 * DAY).outcomes == []


# --- all six at once ------------------------------------------------------------------------------


def test_a_first_month_with_all_six_journeys_running_side_by_side():
    customer = Customer(shipped(max_active=6), customer_id="c-story", timezone="Europe/Paris")
    timeline = sent(customer.does("signup", 0).commands)
    customer.does("product_view", HOUR, product="sku-tent-2p")
    customer.does("add_to_cart", 2 * HOUR, product="sku-tent-2p", price=249.0)
    timeline += sent(customer.timer_until(3 * HOUR))
    purchase = customer.buys("sku-tent-2p", at=5 * HOUR, value=249.0)
    assert ("convert", "remarketing_after_browse", "") in outcomes(purchase)
    assert ("convert", "cart_abandoned", "") in outcomes(purchase)
    assert ("convert", "welcome", "") in outcomes(purchase)
    assert customer.journeys == {"post_purchase", "win_back"}
    timeline += sent(customer.timer_until(31 * DAY))
    assert timeline == [
        ("welcome", "welcome", 0.0),
        ("cart_abandoned", "cart_reminder", 3 * HOUR),
        ("post_purchase", "upsell", 3 * DAY + 5 * HOUR),
        ("post_purchase", "retention_content", 30 * DAY + 5 * HOUR),
    ]
    assert customer.journeys == {"win_back"}


def test_the_win_back_watch_does_not_keep_a_buyer_out_of_the_cart_journey():
    customer = Customer(shipped())  # the default limit: three journeys at once
    customer.buys("sku-1", at=0)
    customer.does("product_view", 4 * DAY, product="sku-2")
    decision = customer.does("add_to_cart", 4 * DAY + MINUTE, product="sku-2")
    assert ("enter", "cart_abandoned", "") in outcomes(decision)
    assert customer.journeys == {"post_purchase", "win_back", "remarketing_after_browse", "cart_abandoned"}
    blocked = customer.does("signup", 4 * DAY + 2 * MINUTE)
    assert outcomes(blocked) == [("blocked", "welcome", "max_active")]


@pytest.mark.parametrize("variant", ["discount", "free_shipping", "holdout"])
def test_the_welcome_test_reports_each_arm_and_the_goals_reached_in_it(variant):
    from orchestrator import audit, metrics
    from orchestrator.replay import Summary

    customer = welcome_customer(variant)
    customer.does("signup", 0)
    wake = customer.wakes(2 * DAY)
    assigned = [o for o in wake.outcomes if o.kind == "assign"]
    assert [(o.journey, o.variant) for o in assigned] == [("welcome", variant)]
    purchase = customer.buys("sku-1", at=3 * DAY)
    assert [(o.kind, o.variant) for o in purchase.outcomes if o.journey == "welcome"] == [
        ("convert", variant),
        ("exit", variant),
    ]

    summary = Summary()
    summary.count(wake)
    summary.count(purchase)
    assert summary.as_dict()["variants"] == {f"welcome:{variant}": {"assigned": 1, "converted": 1}}
    before = metrics.JOURNEY_VARIANTS.labels("welcome", "2", variant, "converted")._value.get()
    metrics.count_outcomes(purchase.outcomes)
    assert metrics.JOURNEY_VARIANTS.labels("welcome", "2", variant, "converted")._value.get() == before + 1
    lines = [audit._journey_line(audit._outcome(o)) for o in wake.outcomes + purchase.outcomes]
    assert any("of journey welcome v2" in line for line in lines)
    assert f"converted in journey welcome v2 (arm {variant}): reached its goal" in lines


def test_a_first_purchase_within_two_weeks_after_the_welcome_series_counts_for_its_arm():
    from orchestrator import metrics
    from orchestrator.replay import Summary

    customer = welcome_customer("discount")
    customer.does("signup", 0)
    customer.timer_until(8 * DAY)
    assert customer.journeys == set()  # the series is over
    purchase = customer.buys("sku-1", at=10 * DAY)
    converted = [(o.kind, o.reason, o.variant) for o in purchase.outcomes if o.journey == "welcome"]
    assert converted == [("convert", "after_exit", "discount")]
    summary = Summary()
    summary.count(purchase)
    assert summary.as_dict()["converted_after_exit"] == {"welcome": 1}
    assert summary.as_dict()["variants"] == {"welcome:discount": {"assigned": 0, "converted": 1}}
    counter = metrics.JOURNEY_CONVERSIONS.labels("welcome", "2", "after_exit")
    before = counter._value.get()
    metrics.count_outcomes(purchase.outcomes)
    assert counter._value.get() == before + 1
