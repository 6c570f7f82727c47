"""Consent, do-not-contact, preferences and quiet hours, every hold-back reason, and the final hard check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from textwrap import dedent

import pytest
import stories
from stories import T0  # Friday 2027-01-15, 08:00 UTC

from orchestrator.core.decide import Decision
from orchestrator.core.fold import MAX_PREFERRED
from orchestrator.core.policy import REASONS, Policy, contactable
from orchestrator.core.state import CustomerState
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import Compiled, compile_text

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
RULES = Policy()


def define(steps: str, id: str = "j") -> Compiled:
    text = f"id: {id}\nversion: 1\ndescription: Test\ntrigger: {{event: signup}}\nsteps:\n{dedent(steps).strip()}\n"
    return compile_text(text, f"{id}.yaml")


HELLO_IN_AN_HOUR = define("- wait: 1h\n- {id: hello, action: {channel: email, action: hello}}")
SHORT_LIVED_HELLO = define("- wait: 1h\n- {id: hello, action: {channel: email, action: hello, ttl: 2h}}")
ALL_HOLDOUT = define("- split: [{holdout: true, percent: 100}]\n- {id: offer, action: {channel: email, action: offer}}")


def customer(*journeys: Compiled, policy: Policy = RULES, timezone: str | None = None) -> stories.Customer:
    """Built-in rules on (unless the policy says otherwise) and the given journeys."""
    return stories.Customer(Engine(Catalogue.of(journeys)), customer_id="c-7", policy=policy, timezone=timezone)


def sent(decision: Decision) -> list[tuple[str, str]]:
    return [(c.channel, c.action) for c in decision.commands]


def held(decision: Decision) -> list[tuple[str, str]]:
    return [(h.command.action, h.reason) for h in decision.held]


# --- contactable ----------------------------------------------------------------------------------


def test_contactable_allows_a_customer_who_said_nothing():
    assert contactable(CustomerState(key="c"), "email", RULES) is None


@pytest.mark.parametrize(
    ("state", "policy", "reason"),
    [
        (CustomerState(key="c", do_not_contact=True), RULES, "do_not_contact"),
        (CustomerState(key="c", do_not_contact=True, consent={"email": True}), RULES, "do_not_contact"),
        (CustomerState(key="c", consent={"email": False}), RULES, "no_consent"),
        (CustomerState(key="c", consent={"*": False}), RULES, "no_consent"),
        (CustomerState(key="c", consent={"*": True, "email": False}), RULES, "no_consent"),
        (CustomerState(key="c"), Policy(consent_required_channels=frozenset({"email"})), "no_consent"),
    ],
    ids=["dnc", "dnc-beats-opt-in", "opted-out", "global-opt-out", "opted-out-after-a-global-yes", "opt-in-required"],
)
def test_contactable_says_why_contact_is_not_allowed(state, policy, reason):
    assert contactable(state, "email", policy) == reason


@pytest.mark.parametrize(
    ("consent", "reason"),
    [({"*": False, "email": True}, None), ({"email": True, "*": False}, "no_consent")],
    ids=["yes-after-no-to-all", "yes-before-no-to-all"],
)
def test_a_yes_to_a_channel_beside_a_no_to_every_channel_counts_only_if_it_came_after(consent, reason):
    """A word on every channel is stored first (it clears the others); an earlier version kept
    the order channels were first named in, and there a yes before the no is not the latest."""
    assert contactable(CustomerState(key="c", consent=consent), "email", RULES) == reason


def test_contactable_allows_an_opt_in_channel_after_an_explicit_yes():
    state = CustomerState(key="c", consent={"email": True})
    assert contactable(state, "email", Policy(consent_required_channels=frozenset({"email"}))) is None


# --- do not contact -------------------------------------------------------------------------------


def test_do_not_contact_holds_back_every_channel():
    person = customer()
    person.does("consent", do_not_contact=True)
    assert person.state.do_not_contact is True
    search = person.does("search", at=MINUTE, query="tent")
    purchase = person.buys("sku-1", at=2 * MINUTE)
    assert sent(search) == sent(purchase) == []
    assert held(search) == [("remarketing_ad", "do_not_contact")]
    assert held(purchase) == [("upsell", "do_not_contact")]


def test_do_not_contact_stops_running_remarketing_at_once():
    person = customer()
    person.does("product_view", product="sku-1")
    assert sent(person.does("consent", at=MINUTE, do_not_contact=True)) == [("ads", "remarketing_stop")]


def test_opting_in_again_does_not_lift_do_not_contact_only_do_not_contact_false_does():
    person = customer()
    person.does("consent", do_not_contact=True)
    person.does("consent", at=MINUTE, granted=True)
    person.does("consent", at=2 * MINUTE, channel="ads", granted=True)
    assert held(person.does("search", at=3 * MINUTE, query="tent")) == [("remarketing_ad", "do_not_contact")]
    person.does("consent", at=4 * MINUTE, do_not_contact=False)
    assert sent(person.does("search", at=5 * MINUTE, query="stove")) == [("ads", "remarketing_ad")]


def test_do_not_contact_leaves_per_channel_consent_alone_and_may_come_with_it():
    person = customer()
    person.does("consent", channel="ads", granted=False, do_not_contact=True)
    assert person.state.consent == {"ads": False}
    person.does("consent", at=MINUTE, do_not_contact=False)
    assert held(person.does("search", at=2 * MINUTE, query="tent")) == [("remarketing_ad", "no_consent")]


@pytest.mark.parametrize("value", ["yes", 1, None, {"all": True}])
def test_a_do_not_contact_that_is_not_a_boolean_is_ignored(value):
    person = customer()
    person.does("consent", do_not_contact=True)
    person.does("consent", at=MINUTE, do_not_contact=value)
    assert person.state.do_not_contact is True


# --- preferences ----------------------------------------------------------------------------------


def test_preferred_channels_are_kept_in_order_normalised_and_without_repeats():
    person = customer()
    person.does("preferences", preferred_channels=["Email", " sms ", "email", "", 7, "no spaces!", "app"])
    assert person.state.preferred_channels == ["email", "sms", "app"]


def test_preferred_channels_are_bounded():
    person = customer()
    person.does("preferences", preferred_channels=[f"ch{i}" for i in range(25)])
    assert person.state.preferred_channels == [f"ch{i}" for i in range(MAX_PREFERRED)]
    assert MAX_PREFERRED == 10


def test_preferred_channels_that_are_not_a_list_are_ignored_and_an_empty_list_clears_them():
    person = customer()
    person.does("preferences", preferred_channels=["email"])
    person.does("preferences", at=MINUTE, preferred_channels="sms")
    assert person.state.preferred_channels == ["email"]
    person.does("preferences", at=2 * MINUTE, preferred_channels=[])
    assert person.state.preferred_channels == []


def test_quiet_hours_are_stored_as_hh_mm_and_null_removes_them():
    person = customer()
    person.does("preferences", quiet_hours={"start": "21:00", "end": "8:00"})
    assert person.state.quiet_hours == {"start": "21:00", "end": "08:00"}
    person.does("preferences", at=MINUTE, quiet_hours=None)
    assert person.state.quiet_hours == {}


@pytest.mark.parametrize(
    "value",
    [
        "21:00-08:00",
        {"start": "21:00"},
        {"start": "25:00", "end": "08:00"},
        {"start": "21:60", "end": "08:00"},
        {"start": "9pm", "end": "08:00"},
        {"start": 21, "end": 8},
        {"start": "21:00\n", "end": "08:00"},
        {"start": "08:00", "end": "08:00"},
    ],
)
def test_invalid_quiet_hours_are_ignored_and_keep_what_was_there(value):
    person = customer()
    person.does("preferences", quiet_hours={"start": "22:00", "end": "07:00"})
    person.does("preferences", at=MINUTE, quiet_hours=value)
    assert person.state.quiet_hours == {"start": "22:00", "end": "07:00"}


def test_preferences_change_only_what_the_event_names():
    person = customer()
    person.does("preferences", timezone="Europe/Paris", preferred_channels=["sms"])
    person.does("preferences", at=MINUTE, quiet_hours={"start": "22:00", "end": "07:00"})
    state = person.state
    assert (state.timezone, state.preferred_channels) == ("Europe/Paris", ["sms"])


def test_a_time_zone_in_any_case_is_stored_as_iana_spells_it():
    person = customer()
    person.does("preferences", timezone="asia/tokyo")
    assert person.state.timezone == "Asia/Tokyo"


def test_new_fields_survive_a_round_trip_through_bytes():
    person = customer()
    person.does("consent", do_not_contact=True)
    person.does("preferences", at=MINUTE, preferred_channels=["sms"], quiet_hours={"start": "22:00", "end": "07:00"})
    assert CustomerState.from_bytes(person.state.to_bytes()) == person.state


# --- quiet hours ----------------------------------------------------------------------------------


def quiet(start: str, end: str, policy: Policy = RULES, timezone: str | None = None) -> stories.Customer:
    person = customer(policy=policy)
    prefs = {"quiet_hours": {"start": start, "end": end}} | ({"timezone": timezone} if timezone else {})
    person.does("preferences", -DAY, **prefs)
    return person


def upsell_at(person: stories.Customer, hours_after_t0: float) -> list[tuple[str, str]]:
    """An email (not exempt from quiet hours) at 08:00 UTC + ``hours_after_t0``: sent or why held."""
    decision = person.buys(f"sku-{hours_after_t0}", at=hours_after_t0 * HOUR)
    return sent(decision) or held(decision)


@pytest.mark.parametrize(
    ("utc", "outcome"),
    [
        (13, ("upsell", "quiet_hours")),  # 21:00
        (15, ("upsell", "quiet_hours")),  # 23:00
        (16, ("upsell", "quiet_hours")),  # 00:00
        (23 + 59 / 60, ("upsell", "quiet_hours")),  # 07:59
        (24, ("email", "upsell")),  # 08:00: the end is not quiet any more
        (12 + 59 / 60, ("email", "upsell")),  # 20:59
    ],
    ids=["21:00", "23:00", "midnight", "07:59", "08:00", "20:59"],
)
def test_quiet_hours_that_wrap_midnight(utc, outcome):
    assert upsell_at(quiet("21:00", "08:00"), utc) == [outcome]


@pytest.mark.parametrize(
    ("utc", "outcome"),
    [
        (4, ("upsell", "quiet_hours")),
        (5.5, ("upsell", "quiet_hours")),
        (6, ("email", "upsell")),
        (3, ("email", "upsell")),
    ],
    ids=["12:00", "13:30", "14:00", "11:00"],
)
def test_quiet_hours_within_one_day(utc, outcome):
    assert upsell_at(quiet("12:00", "14:00"), utc) == [outcome]


def test_quiet_hours_are_on_the_customer_s_own_clock():
    # New York is UTC-5 in January: 21:00-08:00 there is 02:00-13:00 UTC.
    assert upsell_at(quiet("21:00", "08:00", timezone="America/New_York"), 0) == [("upsell", "quiet_hours")]  # 03:00
    assert upsell_at(quiet("21:00", "08:00", timezone="America/New_York"), 5) == [("email", "upsell")]  # 08:00
    assert upsell_at(quiet("21:00", "08:00", timezone="America/New_York"), 14) == [("email", "upsell")]  # 17:00
    assert upsell_at(quiet("21:00", "08:00"), 14) == [("upsell", "quiet_hours")]  # 22:00 UTC


def test_without_a_customer_time_zone_quiet_hours_use_the_policy_s_default():
    tokyo = Policy(default_timezone="Asia/Tokyo")  # UTC+9: 12:00 UTC is 21:00 there
    assert upsell_at(quiet("21:00", "08:00", policy=tokyo), 4) == [("upsell", "quiet_hours")]
    assert upsell_at(quiet("21:00", "08:00"), 4) == [("email", "upsell")]


def test_exempt_channels_ignore_quiet_hours():
    person = quiet("21:00", "08:00")
    assert sent(person.does("search", at=15 * HOUR, query="tent")) == [("ads", "remarketing_ad")]
    strict = quiet("21:00", "08:00", policy=Policy(quiet_hours_exempt_channels=frozenset()))
    assert held(strict.does("search", at=15 * HOUR, query="tent")) == [("remarketing_ad", "quiet_hours")]


HELLO_OR_NEVER = define("- wait: 1h\n- {id: hello, action: {channel: email, action: hello, quiet_hours: skip}}")
HELLO_THEN_BYE = define(
    """
    - wait: 1h
    - {id: hello, action: {channel: email, action: hello}}
    - wait: 1h
    - {id: bye, action: {channel: email, action: bye}}
    """
)


def test_a_journey_action_due_in_quiet_hours_waits_for_them_to_end_and_the_journey_with_it():
    person = customer(HELLO_THEN_BYE, policy=stories.JOURNEYS_ONLY)
    person.does("preferences", quiet_hours={"start": "21:00", "end": "08:00"})
    person.does("signup", at=12 * HOUR)  # 20:00 UTC: hello falls due at 21:00
    at_nine = person.wakes(13 * HOUR)
    assert at_nine.commands == [] and held(at_nine) == []
    assert [(o.kind, o.reason) for o in at_nine.outcomes] == [("delay", "hello until 2027-01-16T08:00Z")]
    assert person.next_wake == 24 * HOUR  # 08:00 the next morning
    morning = person.wakes(24 * HOUR)
    assert sent(morning) == [("email", "hello")]
    assert morning.commands[0].issued_at == T0 + 24 * HOUR
    assert person.next_wake == 25 * HOUR  # the rest of the journey moved with it


def test_a_delayed_action_fired_late_goes_out_as_of_the_end_of_the_quiet_hours():
    person = customer(HELLO_IN_AN_HOUR, policy=stories.JOURNEYS_ONLY)
    person.does("preferences", quiet_hours={"start": "21:00", "end": "08:00"})
    person.does("signup", at=12 * HOUR)
    decision = person.does("page_view", at=26 * HOUR)  # 10:00 the next day, the timer never came
    assert [(c.action, c.issued_at) for c in decision.commands] == [("hello", T0 + 24 * HOUR)]


def test_a_goal_ends_a_journey_whose_action_waits_for_quiet_hours_to_end():
    text = HELLO_IN_AN_HOUR.source.replace("steps:", "goal: {event: purchase}\nsteps:")
    person = customer(compile_text(text, "j.yaml"), policy=stories.JOURNEYS_ONLY)
    person.does("preferences", quiet_hours={"start": "21:00", "end": "08:00"})
    person.does("signup", at=12 * HOUR)
    person.wakes(13 * HOUR)
    bought = person.does("purchase", at=14 * HOUR, value=10)
    assert ("exit", "goal") in [(o.kind, o.reason) for o in bought.outcomes]
    assert person.next_wake is None
    assert person.timer_until(48 * HOUR) == []


def test_an_action_marked_skip_is_held_back_in_quiet_hours_as_of_when_it_fell_due():
    person = customer(HELLO_OR_NEVER, policy=stories.JOURNEYS_ONLY)
    person.does("preferences", quiet_hours={"start": "21:00", "end": "08:00"})
    person.does("signup", at=12 * HOUR)
    decision = person.does("page_view", at=26 * HOUR)
    assert held(decision) == [("hello", "quiet_hours")]


def test_a_delay_follows_the_customer_s_own_clock():
    person = customer(HELLO_IN_AN_HOUR, policy=stories.JOURNEYS_ONLY, timezone="America/New_York")
    person.does("preferences", quiet_hours={"start": "21:00", "end": "08:00"})
    person.does("signup", at=16 * HOUR)  # 19:00 in New York: hello falls due at 20:00, not quiet
    assert sent(person.wakes(17 * HOUR)) == [("email", "hello")]
    other = customer(HELLO_IN_AN_HOUR, policy=stories.JOURNEYS_ONLY, timezone="America/New_York")
    other.does("preferences", quiet_hours={"start": "21:00", "end": "08:00"})
    other.does("signup", at=17 * HOUR)  # 20:00 there: due at 21:00, delayed to 08:00 New York = 13:00 UTC
    other.wakes(18 * HOUR)
    assert other.next_wake == 29 * HOUR


def test_quiet_hours_lifted_during_a_delay_send_the_action_at_once():
    person = customer(HELLO_IN_AN_HOUR, policy=stories.JOURNEYS_ONLY)
    person.does("preferences", quiet_hours={"start": "21:00", "end": "08:00"})
    person.does("signup", at=12 * HOUR)
    person.wakes(13 * HOUR)  # 21:00 UTC: hello waits for 08:00
    decision = person.does("preferences", at=14 * HOUR, quiet_hours=None)
    assert sent(decision) == [("email", "hello")]
    assert decision.commands[0].issued_at == T0 + 14 * HOUR
    assert person.next_wake is None


def test_a_time_zone_given_during_a_delay_moves_it_to_the_end_of_the_quiet_hours_there():
    person = customer(HELLO_IN_AN_HOUR, policy=stories.JOURNEYS_ONLY)
    person.does("preferences", quiet_hours={"start": "21:00", "end": "08:00"})
    person.does("signup", at=12 * HOUR)
    person.wakes(13 * HOUR)  # 21:00 UTC: delayed to 08:00 UTC
    assert person.next_wake == 24 * HOUR
    person.does("preferences", at=14 * HOUR, timezone="America/New_York")  # 17:00 there: not quiet
    assert person.next_wake is None
    still = customer(HELLO_IN_AN_HOUR, policy=stories.JOURNEYS_ONLY)
    still.does("preferences", quiet_hours={"start": "21:00", "end": "08:00"})
    still.does("signup", at=12 * HOUR)
    still.wakes(13 * HOUR)
    still.does("preferences", at=16 * HOUR, timezone="Europe/Berlin")  # 01:00 there: quiet until 08:00 Berlin
    assert still.next_wake == 23 * HOUR


# --- expiry ---------------------------------------------------------------------------------------


def test_a_command_that_expired_before_it_could_leave_is_held_back():
    person = customer(SHORT_LIVED_HELLO, policy=stories.JOURNEYS_ONLY)
    person.does("signup")
    late = person.wakes(4 * HOUR)  # due at 1h, alive for 2h
    assert late.commands == []
    assert held(late) == [("hello", "expired")]


def test_a_late_command_still_alive_is_sent():
    person = customer(SHORT_LIVED_HELLO, policy=stories.JOURNEYS_ONLY)
    person.does("signup")
    assert [c.action for c in person.wakes(2 * HOUR).commands] == ["hello"]


def test_an_event_that_reveals_an_expired_wait_holds_it_back():
    person = customer(SHORT_LIVED_HELLO, policy=stories.JOURNEYS_ONLY)
    person.does("signup")
    assert held(person.does("page_view", at=5 * HOUR)) == [("hello", "expired")]


def test_an_expired_command_is_not_counted_as_a_contact():
    person = customer(SHORT_LIVED_HELLO, policy=stories.JOURNEYS_ONLY)
    person.does("signup")
    person.wakes(4 * HOUR)
    assert person.state.contacts.get("email", []) == []


# --- the final hard check -------------------------------------------------------------------------


def test_an_overdue_wait_revealed_by_an_opt_out_of_its_channel_is_held_not_sent():
    person = customer(HELLO_IN_AN_HOUR, policy=stories.JOURNEYS_ONLY)
    person.does("signup")
    decision = person.does("consent", at=3 * HOUR, via="email", channel="email", granted=False)  # timer was late
    assert decision.commands == []
    assert held(decision) == [("hello", "no_consent")]
    assert person.state.contacts.get("email", []) == []  # not counted against the frequency cap


def test_an_overdue_wait_revealed_by_do_not_contact_is_held_not_sent():
    person = customer(HELLO_IN_AN_HOUR, policy=stories.JOURNEYS_ONLY)
    person.does("signup")
    decision = person.does("consent", at=3 * HOUR, do_not_contact=True)
    assert decision.commands == []
    assert held(decision) == [("hello", "do_not_contact")]


def test_an_overdue_wait_on_another_channel_than_the_opt_out_still_goes():
    person = customer(HELLO_IN_AN_HOUR, policy=stories.JOURNEYS_ONLY)
    person.does("signup")
    decision = person.does("consent", at=3 * HOUR, channel="sms", granted=False)
    assert [c.action for c in decision.commands] == ["hello"]


def test_the_timer_on_time_sends_what_a_later_opt_out_cannot_undo():
    person = customer(HELLO_IN_AN_HOUR, policy=stories.JOURNEYS_ONLY)
    person.does("signup")
    assert [c.action for c in person.wakes(HOUR).commands] == ["hello"]
    assert person.does("consent", at=3 * HOUR, channel="email", granted=False).held == []


def test_stopping_running_ads_passes_the_final_check():
    person = customer()
    person.does("search", query="tent")
    decision = person.does("consent", at=MINUTE, granted=False)
    assert sent(decision) == [("ads", "remarketing_stop")]


# --- every reason ---------------------------------------------------------------------------------


def _no_consent() -> Decision:
    person = customer()
    person.does("consent", channel="ads", granted=False)
    return person.does("search", at=MINUTE, query="tent")


def _do_not_contact() -> Decision:
    person = customer()
    person.does("consent", do_not_contact=True)
    return person.does("search", at=MINUTE, query="tent")


def _frequency_cap() -> Decision:
    person = customer(policy=Policy(frequency_cap_per_day=1))
    person.does("product_view", product="sku-1")
    return person.does("product_view", at=MINUTE, product="sku-2")


def _quiet_hours() -> Decision:
    person = quiet("00:00", "23:59")
    return person.buys("sku-1", at=MINUTE)


def _holdout() -> Decision:
    return customer(ALL_HOLDOUT, policy=stories.JOURNEYS_ONLY).does("signup")


def _already_converted() -> Decision:
    person = customer()
    person.buys("sku-1", at=0)
    return person.does("product_view", at=HOUR, product="sku-1")


def _cooldown() -> Decision:
    person = customer()
    person.does("product_view", product="sku-1")
    return person.does("product_view", at=HOUR, product="sku-1")


def _no_address() -> Decision:
    """A guest checkout known by a cookie alone: the upsell email would reach no one."""
    guest = customer()
    purchase = stories.identified_event("g-1", "purchase", 0, props={"products": [{"id": "sku-1"}]}, cookie="ab")
    return guest.decide(purchase, purchase.ts)


def _expired() -> Decision:
    person = customer(SHORT_LIVED_HELLO, policy=stories.JOURNEYS_ONLY)
    person.does("signup")
    return person.wakes(DAY)


EVERY_REASON: dict[str, Callable[[], Decision]] = {
    "no_consent": _no_consent,
    "do_not_contact": _do_not_contact,
    "frequency_cap": _frequency_cap,
    "quiet_hours": _quiet_hours,
    "holdout": _holdout,
    "already_converted": _already_converted,
    "cooldown": _cooldown,
    "expired": _expired,
    "no_address": _no_address,
}


def test_an_anonymous_profile_is_reached_by_email_only_with_an_address():
    cookie_only = CustomerState(key="cookie:ab", identifiers={"cookie": "ab"})
    assert contactable(cookie_only, "email", RULES) == "no_address"
    assert contactable(cookie_only, "sms", RULES) == "no_address"
    assert contactable(cookie_only, "web", RULES) is None  # the page reaches them where they are
    with_email = CustomerState(key="cookie:ab", identifiers={"cookie": "ab", "email": "a@example.com"})
    assert contactable(with_email, "email", RULES) is None
    assert contactable(CustomerState(key="cookie:ab", customer_id="c-9"), "email", RULES) is None
    assert contactable(CustomerState(key="customer_id:crm:42"), "email", RULES) is None
    anything_goes = Policy(channel_addresses=())
    assert contactable(cookie_only, "email", anything_goes) is None


def test_an_email_to_a_cookie_is_held_back_and_email_reaches_the_customer_once_there_is_an_address():
    """A guest's upsell is held back; once the customer gives an address, what comes next
    (the second purchase's retention email) reaches them."""
    guest = customer()
    cart = stories.identified_event("g-1", "purchase", 0, props={"products": [{"id": "sku-1"}]}, cookie="ab")
    assert held(guest.decide(cart, cart.ts)) == [("upsell", "no_address")]
    again = stories.identified_event("g-2", "purchase", MINUTE, props={"products": [{"id": "sku-2"}]}, cookie="ab")
    again = replace(again, identifiers={"cookie": "ab", "email": "a@example.com"})
    assert sent(guest.decide(again, again.ts)) == [("email", "retention")]


def test_the_reason_codes_are_a_small_known_set():
    assert set(REASONS) == set(EVERY_REASON)


@pytest.mark.parametrize("reason", sorted(EVERY_REASON))
def test_every_reason_is_reported_for_what_it_holds_back(reason):
    decision = EVERY_REASON[reason]()
    assert decision.commands == []
    assert [h.reason for h in decision.held] == [reason]


def test_the_time_of_day_in_these_tests_is_what_the_comments_say():
    from datetime import UTC, datetime

    assert datetime.fromtimestamp(T0, UTC).strftime("%a %H:%M") == "Fri 08:00"
