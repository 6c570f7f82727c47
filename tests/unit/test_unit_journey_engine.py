"""The journey engine through decide(): entering, waiting, timers, goals, branches, splits, versions, policy."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from textwrap import dedent
from zoneinfo import ZoneInfo

import pytest
import stories
from stories import JOURNEYS_ONLY, T0

from orchestrator.core.decide import WAKE, Decision, decide
from orchestrator.core.event import Event
from orchestrator.core.localtime import next_local_time
from orchestrator.core.policy import Policy
from orchestrator.core.state import CustomerState
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.context import TRIGGER_PROPERTIES_MAX
from orchestrator.journeys.engine import Engine, Outcome
from orchestrator.journeys.loader import Compiled, InvalidJourney, compile_text, review

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


def define(steps: str, head: str = "trigger: {event: signup}", id: str = "j", version: int = 1) -> Compiled:
    """A journey from its steps (a YAML list) and any top-level fields besides id and version."""
    text = f"id: {id}\nversion: {version}\n{dedent(head).strip()}\nsteps:\n{dedent(steps).strip()}\n"
    return compile_text(text, f"{id}.yaml")


def engine_of(*journeys: Compiled, **options) -> Engine:
    return Engine(Catalogue.of(journeys), **options)


HELLO_IN_AN_HOUR = define(
    """
    - id: an_hour
      wait: 1h
    - id: hello
      action: {channel: email, action: hello, payload: {events: '{{ state.events }}'}}
    """,
    head="description: Say hello\ntrigger: {event: signup}",
)


class Customer(stories.Customer):
    @property
    def journeys(self) -> dict[str, str]:
        """Journey id -> current step."""
        assert self.state is not None
        return {jid: inst["step"] for jid, inst in self.state.journeys.items()}


def actions(decision: Decision) -> list[tuple[str, str]]:
    return [(c.journey, c.action) for c in decision.commands]


def held(decision: Decision) -> list[tuple[str, str]]:
    return [(h.command.action, h.reason) for h in decision.held]


def outcomes(decision: Decision) -> list[tuple[str, str, str]]:
    return [(o.kind, o.journey, o.reason) for o in decision.outcomes]


# --- entering -------------------------------------------------------------------------------------


def test_the_trigger_event_enters_the_journey_and_arms_its_first_wait():
    customer = Customer(engine_of(HELLO_IN_AN_HOUR))
    decision = customer.does("signup")
    assert outcomes(decision) == [("enter", "j", "")]
    assert decision.commands == []
    assert customer.journeys == {"j": "an_hour"}
    assert customer.state.journeys["j"]["v"] == 1
    assert customer.state.journeys["j"]["trigger"]["event_id"] == "c-1-signup-1"
    assert customer.state.journey_log["j"]["entries"] == 1


def test_other_events_do_not_enter():
    customer = Customer(engine_of(HELLO_IN_AN_HOUR))
    decision = customer.does("page_view")
    assert decision.outcomes == []
    assert customer.journeys == {}
    assert customer.state.next_wake() is None


def test_the_trigger_channel_filter_picks_the_channel_that_saw_the_event():
    journey = define("- exit", head="trigger: {event: signup, channel: [store, app]}")
    assert Customer(engine_of(journey)).does("signup", via="web").outcomes == []
    assert outcomes(Customer(engine_of(journey)).does("signup", via="store"))[0] == ("enter", "j", "")
    assert outcomes(Customer(engine_of(journey)).does("signup", via="app"))[0] == ("enter", "j", "")


def test_the_trigger_condition_must_hold():
    journey = define("- wait: 1d", head="trigger:\n  event: signup\n  when: event.properties.plan == 'pro'")
    assert Customer(engine_of(journey)).does("signup", plan="basic").outcomes == []
    assert outcomes(Customer(engine_of(journey)).does("signup", plan="pro")) == [("enter", "j", "")]


def test_the_trigger_condition_sees_the_state_with_the_event_already_folded_in():
    journey = define("- wait: 1d", head="trigger:\n  event: page_view\n  when: state.events == 3")
    customer = Customer(engine_of(journey))
    assert customer.does("page_view").outcomes == []
    assert customer.does("page_view", at=MINUTE).outcomes == []
    assert outcomes(customer.does("page_view", at=2 * MINUTE)) == [("enter", "j", "")]


MANY = {f"p{i:02}": i for i in range(TRIGGER_PROPERTIES_MAX)}  # before the one that matters


@pytest.mark.parametrize(
    "when",
    ["event.properties.plan == 'pro'", "[event][0].properties.plan == 'pro'"],  # a field read, the whole event
    ids=["field", "whole"],
)
def test_conditions_and_templates_see_every_property_of_the_current_event(when):
    journey = define(
        "- action: {channel: email, action: hi, payload: {text: 'plan {{ event.properties.plan }}'}}",
        head=f'trigger:\n  event: signup\n  when: "{when}"',
    )
    decision = Customer(engine_of(journey)).does("signup", **MANY, plan="pro")
    assert [c.payload for c in decision.commands] == [{"text": "plan pro"}]
    assert [o.kind for o in decision.outcomes] == ["enter", "exit"]


def test_the_stored_trigger_keeps_only_its_first_properties_before_and_after_entry():
    journey = define(
        """
        - wait: 1h
        - action: {channel: email, action: hi, payload: {n: '{{ size(trigger.properties) }}'}}
        """,
        head="trigger:\n  event: signup\n  when: size(trigger.properties) == size(event.properties) - 1",
    )
    customer = Customer(engine_of(journey))
    customer.does("signup", **MANY, plan="pro")
    assert customer.state.journeys["j"]["trigger"]["properties"] == MANY  # bounded, what conditions saw
    assert customer.wakes(at=HOUR).commands[0].payload == {"n": TRIGGER_PROPERTIES_MAX}


def test_an_audience_that_does_not_hold_keeps_the_customer_out():
    journey = define("- wait: 1d", head="trigger: {event: signup}\naudience: state.purchases > 0")
    customer = Customer(engine_of(journey))
    decision = customer.does("signup")
    assert decision.outcomes == []
    assert customer.journeys == {}


def test_an_audience_that_holds_lets_the_customer_in():
    journey = define("- wait: 1d", head="trigger: {event: [signup, page_view]}\naudience: state.purchases > 0")
    customer = Customer(engine_of(journey))
    customer.does("purchase", value=10.0)
    assert outcomes(customer.does("page_view", at=MINUTE)) == [("enter", "j", "")]


# --- conditions that fail at runtime --------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        "event.properties.plan == 'pro'",  # missing field
        "event.properties.age > 'x'",  # wrong type
        "1 / 0 == 1",  # division by zero
    ],
)
def test_a_trigger_condition_that_fails_at_runtime_is_false_and_reported_never_raised(when):
    journey = define("- wait: 1d", head=f'trigger:\n  event: signup\n  when: "{when}"')
    decision = Customer(engine_of(journey)).does("signup", age=30)
    assert decision.state.journeys == {}
    assert [(o.kind, o.journey, o.version) for o in decision.outcomes] == [("condition_error", "j", 1)]
    assert decision.outcomes[0].reason.startswith(when)


def test_a_condition_whose_value_is_not_a_boolean_is_false_and_counted_as_a_condition_error():
    journey = define("- wait: 1d", head="trigger:\n  event: signup\n  when: event.properties.age")
    decision = Customer(engine_of(journey)).does("signup", age=30)
    assert decision.state.journeys == {}
    assert [(o.kind, o.journey) for o in decision.outcomes] == [("condition_error", "j")]
    assert "condition gave int, not bool" in decision.outcomes[0].reason


def test_a_branch_case_that_fails_at_runtime_is_false_and_the_next_case_is_tried():
    journey = define(
        """
        - branch:
          - {when: "event.properties.missing > 1", next: first}
          - {else: true, next: second}
        - id: first
          action: {channel: email, action: first}
          next: done
        - id: second
          action: {channel: email, action: second}
        - id: done
          exit: completed
        """
    )
    decision = Customer(engine_of(journey)).does("signup")
    assert actions(decision) == [("j", "second")]
    assert [o.kind for o in decision.outcomes] == ["enter", "condition_error", "exit"]


def test_a_payload_template_that_fails_at_runtime_skips_the_action_but_not_the_journey():
    journey = define(
        """
        - action: {channel: email, action: broken, payload: {x: "{{ event.properties.missing }}"}}
        - action: {channel: email, action: fine, payload: {x: "plan {{ event.properties.plan }}"}}
        """
    )
    decision = Customer(engine_of(journey)).does("signup", plan="pro")
    assert actions(decision) == [("j", "fine")]
    assert decision.commands[0].payload == {"x": "plan pro"}
    assert outcomes(decision)[1][:2] == ("condition_error", "j")
    assert outcomes(decision)[1][2].startswith("step1:")
    assert outcomes(decision)[-1] == ("exit", "j", "completed")


def test_a_whole_template_keeps_the_value_s_type_and_a_mixed_one_is_text():
    journey = define(
        """
        - action:
            channel: email
            action: hello
            payload:
              count: "{{ state.events }}"
              items: "{{ [1, 2] }}"
              text: "you have {{ state.events }} events"
              fixed: {deep: [plain, 3]}
        """
    )
    payload = Customer(engine_of(journey)).does("signup").commands[0].payload
    assert payload == {"count": 1, "items": [1, 2], "text": "you have 1 events", "fixed": {"deep": ["plain", 3]}}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("flag={{ true }}, {{ false }}", "flag=true, false"),
        ("x={{ null }}.", "x=."),
        ('items={{ [1, "a", null] }}', 'items=[1,"a",null]'),
        ('m={{ {"k": 1} }}', 'm={"k":1}'),
        ("n={{ 2.0 }} {{ 1.5 }} {{ 3 }} {{ 4u }} {{ 1e20 }}", "n=2 1.5 3 4 1e+20"),
        ('d={{ duration("90m") }} {{ duration("-1ms") }}', "d=1h30m0s -1ms"),
        ('at={{ timestamp("2024-01-01T09:30:00Z") }}', "at=2024-01-01T09:30:00+00:00"),
        ('all={{ [2.0, duration("1s"), {"é": "café"}] }}', 'all=[2,"1s",{"é":"café"}]'),
        ("plan {{ event.properties.plan }}", "plan pro"),
    ],
)
def test_a_template_among_text_reads_as_a_customer_should_see_it(text, shown):
    """Not Python's repr (True, None, [1, 'a'], 0:00:01): these go out in messages."""
    journey = define(
        f"""
        - action:
            channel: email
            action: hello
            payload: {{text: '{text}'}}
        """
    )
    assert Customer(engine_of(journey)).does("signup", plan="pro").commands[0].payload == {"text": shown}


# --- waits and timers -----------------------------------------------------------------------------


def test_a_wait_of_an_hour_asks_for_a_timer_an_hour_later():
    customer = Customer(engine_of(HELLO_IN_AN_HOUR))
    customer.does("signup", at=5 * MINUTE)
    assert customer.next_wake == 5 * MINUTE + HOUR


def test_a_wake_before_the_wait_is_over_does_nothing():
    customer = Customer(engine_of(HELLO_IN_AN_HOUR))
    customer.does("signup")
    decision = customer.wakes(HOUR - 1)
    assert decision.commands == []
    assert decision.outcomes == []
    assert customer.next_wake == HOUR


def test_a_wake_when_the_wait_is_over_runs_the_next_action():
    customer = Customer(engine_of(HELLO_IN_AN_HOUR), customer_id="c-7")
    customer.does("signup")
    decision = customer.wakes(HOUR)
    assert actions(decision) == [("j", "hello")]
    hello = decision.commands[0]
    assert hello.customer_id == "c-7"
    assert hello.channel == "email"
    assert hello.payload == {"events": 1}
    assert hello.issued_at == T0 + HOUR
    assert hello.expires_at == T0 + HOUR + 72 * HOUR
    assert "journey j v1, step hello" in hello.reason
    assert hello.reason.startswith("Say hello")
    assert outcomes(decision) == [("exit", "j", "completed")]
    assert customer.state.next_wake() is None


def test_a_late_wake_fires_the_wait_as_of_its_due_time():
    customer = Customer(engine_of(HELLO_IN_AN_HOUR))
    customer.does("signup")
    hello = customer.wakes(3 * HOUR).commands[0]
    assert hello.issued_at == T0 + HOUR


def test_a_wait_fires_once_a_second_wake_does_nothing():
    customer = Customer(engine_of(HELLO_IN_AN_HOUR))
    customer.does("signup")
    assert len(customer.wakes(HOUR).commands) == 1
    again = customer.wakes(HOUR)
    assert again.commands == []
    assert again.outcomes == []
    assert customer.wakes(2 * HOUR).commands == []


def test_the_action_id_is_the_same_whenever_the_timer_fires_and_differs_per_customer():
    def hello_id(customer_id: str, wake_at: float) -> str:
        customer = Customer(engine_of(HELLO_IN_AN_HOUR), customer_id=customer_id)
        customer.does("signup")
        return customer.wakes(wake_at).commands[0].action_id

    assert hello_id("c-1", HOUR) == hello_id("c-1", HOUR)
    assert hello_id("c-1", HOUR) == hello_id("c-1", 5 * HOUR)
    assert hello_id("c-1", HOUR) != hello_id("c-2", HOUR)


def test_a_wake_for_an_unknown_customer_or_without_an_engine_changes_nothing():
    wake = Event(event_id="timer", type=WAKE, ts=T0, customer_key="c-1", channel="timer", received_at=T0)
    assert decide(None, wake, T0, JOURNEYS_ONLY, engine_of(HELLO_IN_AN_HOUR)).duplicate is True
    state = CustomerState(key="c-1")
    decision = decide(state, wake, T0, JOURNEYS_ONLY, None)
    assert decision.duplicate is True
    assert decision.state is state


def test_a_later_event_first_catches_up_on_a_wait_that_fell_due():
    customer = Customer(engine_of(HELLO_IN_AN_HOUR))
    customer.does("signup")
    decision = customer.does("page_view", at=3 * HOUR)  # the timer never came
    assert actions(decision) == [("j", "hello")]
    assert decision.commands[0].issued_at == T0 + HOUR  # when the wait fell due, not the event time
    assert customer.journeys == {}


def test_catch_up_fires_several_waits_in_time_order_each_at_its_own_time():
    journey = define(
        """
        - wait: 1h
        - action: {channel: email, action: first}
        - wait: 2h
        - action: {channel: email, action: second}
        - wait: 1d
        - action: {channel: email, action: third}
        """
    )
    customer = Customer(engine_of(journey))
    customer.does("signup")
    decision = customer.does("page_view", at=5 * HOUR)
    assert [(c.action, c.issued_at - T0) for c in decision.commands] == [("first", HOUR), ("second", 3 * HOUR)]
    assert customer.next_wake == 3 * HOUR + DAY


# --- goals and exits ------------------------------------------------------------------------------


def test_reaching_the_goal_mid_wait_ends_the_journey_at_once_and_cancels_the_timer():
    journey = define(
        "- wait: 1d\n- action: {channel: ads, action: nudge}", head="trigger: {event: signup}\ngoal: {event: purchase}"
    )
    customer = Customer(engine_of(journey))
    customer.does("signup")
    decision = customer.does("purchase", at=5 * HOUR, value=20.0)
    assert decision.commands == []
    assert outcomes(decision) == [("convert", "j", ""), ("exit", "j", "goal")]
    assert customer.state.next_wake() is None
    assert customer.journeys == {}
    assert customer.state.journey_log["j"]["conversions"] == 1
    assert customer.state.journey_log["j"]["last_exit"] == T0 + 5 * HOUR
    assert customer.wakes(DAY).commands == []


def test_a_goal_with_a_condition_counts_only_when_it_holds():
    journey = define(
        "- wait: 1d\n- action: {channel: ads, action: nudge}",
        head="trigger: {event: signup}\ngoal:\n  event: purchase\n  when: event.properties.value >= 100.0",
    )
    customer = Customer(engine_of(journey))
    customer.does("signup")
    assert customer.does("purchase", at=HOUR, value=20.0).outcomes == []
    assert outcomes(customer.does("purchase", at=2 * HOUR, value=150.0))[0] == ("convert", "j", "")


def test_exit_on_ends_the_journey_without_a_conversion():
    journey = define(
        "- wait: 1d\n- action: {channel: ads, action: nudge}",
        head="trigger: {event: signup}\nexit_on:\n  - event: unsubscribe\n  - {event: complaint, channel: support}",
    )
    customer = Customer(engine_of(journey))
    customer.does("signup")
    assert customer.does("complaint", at=HOUR, via="web").outcomes == []
    decision = customer.does("unsubscribe", at=2 * HOUR)
    assert outcomes(decision) == [("exit", "j", "exit_on:unsubscribe")]
    assert customer.state.next_wake() is None
    assert customer.state.journey_log["j"]["conversions"] == 0


NUDGE_AT_ONCE = define(
    "- action: {channel: ads, action: nudge}\n- wait: 1d\n- action: {channel: ads, action: again}",
    head="trigger: {event: product_view}\ngoal: {event: purchase}\nexit_on:\n  - event: unsubscribe",
)


def test_a_trigger_decided_after_a_goal_dated_later_converts_at_once_and_runs_no_step():
    customer = Customer(engine_of(NUDGE_AT_ONCE))
    customer.does("purchase", at=2 * HOUR, value=20.0)
    decision = customer.does("product_view", at=HOUR, decided=3 * HOUR)
    assert outcomes(decision) == [("enter", "j", ""), ("convert", "j", ""), ("exit", "j", "goal")]
    assert decision.commands == []
    assert customer.journeys == {} and customer.state.next_wake() is None
    assert customer.state.journey_log["j"]["last_exit"] == T0 + 2 * HOUR  # at the goal's own time


def test_a_trigger_decided_after_an_exit_event_dated_later_leaves_without_a_conversion():
    customer = Customer(engine_of(NUDGE_AT_ONCE))
    customer.does("unsubscribe", at=2 * HOUR)
    decision = customer.does("product_view", at=HOUR, decided=3 * HOUR)
    assert outcomes(decision) == [("enter", "j", ""), ("exit", "j", "exit_on:unsubscribe")]
    assert decision.commands == []


@pytest.mark.parametrize("bought_at", [0.0, HOUR], ids=["before the trigger", "at the same time"])
def test_a_goal_dated_before_the_trigger_or_with_it_does_not_end_the_journey(bought_at):
    customer = Customer(engine_of(NUDGE_AT_ONCE))
    customer.does("purchase", at=bought_at, value=20.0)
    decision = customer.does("product_view", at=HOUR, decided=3 * HOUR)
    assert outcomes(decision) == [("enter", "j", "")]
    assert actions(decision) == [("j", "nudge")]


# --- waiting for an event -------------------------------------------------------------------------

WAIT_FOR_A_CLICK = define(
    """
    - id: wait_for_click
      wait:
        event: email_click
        when: event.properties.campaign == 'spring'
        timeout: 2d
        on_event: thanks
        on_timeout: reminder
    - id: thanks
      action: {channel: email, action: thanks}
      next: done
    - id: reminder
      action: {channel: email, action: reminder}
    - id: done
      exit: completed
    """
)


def test_the_awaited_event_takes_the_on_event_path_at_once():
    customer = Customer(engine_of(WAIT_FOR_A_CLICK))
    customer.does("signup")
    assert customer.next_wake == 2 * DAY
    decision = customer.does("email_click", at=HOUR, campaign="spring")
    assert actions(decision) == [("j", "thanks")]
    assert decision.commands[0].issued_at == T0 + HOUR
    assert customer.state.next_wake() is None
    assert customer.wakes(2 * DAY).commands == []


def test_an_event_that_does_not_match_the_wait_s_condition_is_not_the_awaited_one():
    customer = Customer(engine_of(WAIT_FOR_A_CLICK))
    customer.does("signup")
    assert customer.does("email_click", at=HOUR, campaign="autumn").commands == []
    assert customer.journeys == {"j": "wait_for_click"}
    assert customer.next_wake == 2 * DAY


def test_without_the_event_the_timeout_takes_the_on_timeout_path():
    customer = Customer(engine_of(WAIT_FOR_A_CLICK))
    customer.does("signup")
    decision = customer.wakes(2 * DAY)
    assert actions(decision) == [("j", "reminder")]
    assert outcomes(decision) == [("exit", "j", "completed")]


def test_an_awaited_event_after_the_timeout_is_too_late_the_timeout_path_wins():
    customer = Customer(engine_of(WAIT_FOR_A_CLICK))
    customer.does("signup")
    decision = customer.does("email_click", at=3 * DAY, campaign="spring")  # the timer never came
    assert actions(decision) == [("j", "reminder")]


def test_an_event_wait_without_paths_continues_with_the_next_step_either_way():
    journey = define(
        """
        - wait: {event: email_open, timeout: 1d}
        - action: {channel: email, action: follow_up}
        """
    )
    opened = Customer(engine_of(journey))
    opened.does("signup")
    assert actions(opened.does("email_open", at=HOUR)) == [("j", "follow_up")]
    silent = Customer(engine_of(journey))
    silent.does("signup")
    assert actions(silent.wakes(DAY)) == [("j", "follow_up")]


# --- waiting until a local time -------------------------------------------------------------------

AT_TEN = define("- wait: {until: '10:00'}\n- action: {channel: email, action: good_morning}")


def local(text: str, zone: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def test_until_waits_for_the_next_ten_o_clock_in_the_customer_s_time_zone():
    customer = Customer(engine_of(AT_TEN), timezone="America/New_York")
    customer.does("signup")  # 03:00 in New York
    assert customer.state.next_wake() == local("2027-01-15 10:00", "America/New_York")
    assert customer.next_wake == 7 * HOUR


def test_until_after_ten_o_clock_waits_for_ten_o_clock_tomorrow():
    customer = Customer(engine_of(AT_TEN), timezone="Asia/Tokyo")
    customer.does("signup")  # 17:00 in Tokyo
    assert customer.state.next_wake() == local("2027-01-16 10:00", "Asia/Tokyo")
    decision = customer.wakes(customer.next_wake)
    assert actions(decision) == [("j", "good_morning")]
    assert decision.commands[0].issued_at == local("2027-01-16 10:00", "Asia/Tokyo")


def test_without_a_customer_time_zone_the_engine_s_default_is_used():
    customer = Customer(engine_of(AT_TEN, default_timezone="Asia/Tokyo"))
    customer.does("signup")
    assert customer.state.next_wake() == local("2027-01-16 10:00", "Asia/Tokyo")
    utc = Customer(engine_of(AT_TEN))
    utc.does("signup")  # 08:00 UTC
    assert utc.next_wake == 2 * HOUR


@pytest.mark.parametrize(
    ("now", "expected", "hours"),
    [
        ("2027-03-27 12:00", "2027-03-28 10:00", 21),  # spring forward: the night is an hour shorter
        ("2027-10-30 12:00", "2027-10-31 10:00", 23),  # fall back: an hour longer
    ],
)
def test_until_picks_ten_o_clock_local_across_a_daylight_saving_change(now, expected, hours):
    start = local(now, "Europe/Berlin")
    wake = next_local_time(start, "10:00", "Europe/Berlin")
    assert wake == local(expected, "Europe/Berlin")
    assert wake - start == hours * HOUR
    customer = Customer(engine_of(AT_TEN), timezone="Europe/Berlin")
    customer.does("signup", at=start - T0)
    assert customer.state.next_wake() == wake


def test_in_the_hour_repeated_when_clocks_go_back_the_second_half_past_two_is_the_next():
    """Berlin, 31 Oct 2027: 02:00-03:00 comes twice. At 02:40 (summer time) "02:30" is 50
    minutes away, in winter time, not a day; from there on it is the next day's."""
    first_0240 = local("2027-10-31 02:40", "Europe/Berlin")  # fold=0: the first pass, summer time
    second_0230 = first_0240 + 50 * MINUTE
    assert next_local_time(first_0240, "02:30", "Europe/Berlin") == second_0230
    assert next_local_time(first_0240 - 20 * MINUTE, "02:30", "Europe/Berlin") == first_0240 - 10 * MINUTE
    assert next_local_time(second_0230, "02:30", "Europe/Berlin") == local("2027-11-01 02:30", "Europe/Berlin")


def test_a_time_in_the_hour_skipped_when_clocks_go_forward_is_the_moment_after_the_gap():
    one = local("2027-03-28 01:00", "Europe/Berlin")
    assert next_local_time(one, "02:30", "Europe/Berlin") == local("2027-03-28 03:00", "Europe/Berlin")
    assert next_local_time(one, "02:30", "Europe/Berlin") - one == 1 * HOUR  # 01:00 CET, then 03:00 CEST


def test_exactly_at_ten_o_clock_the_next_ten_o_clock_is_tomorrow():
    ten = local("2027-01-15 10:00", "UTC")
    assert next_local_time(ten, "10:00", "UTC") == ten + DAY
    assert next_local_time(ten - 1, "10:00", "UTC") == ten


def test_a_time_zone_given_during_the_wait_moves_it_to_ten_o_clock_where_the_customer_is():
    customer = Customer(engine_of(AT_TEN))
    customer.does("signup")  # 08:00 UTC: 10:00 UTC armed, no zone known yet
    assert customer.next_wake == 2 * HOUR
    decision = customer.does("preferences", at=HOUR, timezone="America/New_York")
    assert decision.commands == []
    assert customer.state.next_wake() == local("2027-01-15 10:00", "America/New_York")
    assert customer.timer_until(6 * HOUR) == []
    assert [c.action for c in customer.timer_until(7 * HOUR)] == ["good_morning"]


def test_a_zone_whose_ten_o_clock_has_passed_waits_for_ten_o_clock_there_tomorrow():
    customer = Customer(engine_of(AT_TEN))
    customer.does("signup")
    customer.does("preferences", at=HOUR, timezone="Asia/Tokyo")  # 18:00 in Tokyo
    assert customer.state.next_wake() == local("2027-01-16 10:00", "Asia/Tokyo")


def test_preferences_that_leave_the_zone_as_it_was_keep_every_wait_where_it_was():
    hour = define("- wait: 1h\n- action: {channel: email, action: hello}", id="h")
    customer = Customer(engine_of(AT_TEN, hour), timezone="Europe/Berlin")
    customer.does("signup")
    before = {jid: inst["wake"] for jid, inst in customer.state.journeys.items()}
    customer.does("preferences", at=10 * MINUTE, timezone="Europe/Berlin", preferred_channels=["sms"])
    assert {jid: inst["wake"] for jid, inst in customer.state.journeys.items()} == before


def test_an_unknown_time_zone_falls_back_to_utc():
    assert next_local_time(T0, "10:00", "Mars/Olympus_Mons") == next_local_time(T0, "10:00", "UTC")
    customer = Customer(engine_of(AT_TEN), timezone="not a zone")
    customer.does("signup")
    assert customer.next_wake == 2 * HOUR


# --- branches -------------------------------------------------------------------------------------

BRANCHY = define(
    """
    - branch:
      - {when: "state.purchases > 1", next: vip}
      - {when: "state.purchases > 0", next: customer}
      - {when: "state.events > 0", next: visitor}
      - {else: true, next: nobody}
    - {id: vip, action: {channel: email, action: vip}, next: done}
    - {id: customer, action: {channel: email, action: customer}, next: done}
    - {id: visitor, action: {channel: email, action: visitor}, next: done}
    - {id: nobody, action: {channel: email, action: nobody}}
    - {id: done, exit: completed}
    """,
    head="trigger: {event: page_view}",
)


def test_a_branch_takes_the_first_case_that_holds():
    customer = Customer(engine_of(BRANCHY))
    customer.does("purchase", value=1.0)
    customer.does("purchase", at=MINUTE, value=1.0)
    assert actions(customer.does("page_view", at=2 * MINUTE)) == [("j", "vip")]  # purchases > 0 holds too
    one = Customer(engine_of(BRANCHY))
    one.does("purchase", value=1.0)
    assert actions(one.does("page_view", at=MINUTE)) == [("j", "customer")]
    assert actions(Customer(engine_of(BRANCHY)).does("page_view")) == [("j", "visitor")]


def test_a_branch_takes_else_when_no_case_holds():
    journey = define(
        """
        - branch:
          - {when: "state.purchases > 0", next: buyer}
          - {else: true, next: browser}
        - {id: buyer, action: {channel: email, action: buyer}, next: done}
        - {id: browser, action: {channel: email, action: browser}}
        - {id: done, exit: completed}
        """
    )
    assert actions(Customer(engine_of(journey)).does("signup")) == [("j", "browser")]


def test_a_branch_without_else_falls_through_to_the_next_step():
    journey = define(
        """
        - branch:
          - {when: "state.purchases > 0", next: done}
        - action: {channel: email, action: fallthrough}
        - {id: done, exit: completed}
        """
    )
    assert actions(Customer(engine_of(journey)).does("signup")) == [("j", "fallthrough")]


# --- splits ---------------------------------------------------------------------------------------

AB_TEST = define(
    """
    - id: test
      split:
        - {variant: a, percent: 45, next: offer_a}
        - {variant: b, percent: 45, next: offer_b}
        - {holdout: true, percent: 10, next: offer_a}
    - {id: offer_a, action: {channel: email, action: offer_a}, next: wait}
    - {id: offer_b, action: {channel: email, action: offer_b}}
    - {id: wait, wait: 1d}
    - {id: later, action: {channel: email, action: later}}
    """,
    head="description: A/B test\ntrigger: {event: signup}",
)


def variant_of(customer_id: str) -> str:
    customer = Customer(engine_of(AB_TEST), customer_id=customer_id)
    customer.does("signup")
    return customer.state.journeys["j"]["variant"]


def test_a_split_is_deterministic_per_customer():
    first = [variant_of(f"c-{i}") for i in range(50)]
    again = [variant_of(f"c-{i}") for i in range(50)]
    assert first == again
    assert set(first) == {"a", "b", "holdout"}


def test_a_split_shares_customers_as_configured():
    shares = Counter(variant_of(f"customer-{i}") for i in range(2000))
    assert abs(shares["a"] / 2000 - 0.45) < 0.03
    assert abs(shares["b"] / 2000 - 0.45) < 0.03
    assert abs(shares["holdout"] / 2000 - 0.10) < 0.02


def test_the_variant_goes_into_the_reason():
    customer_id = next(f"c-{i}" for i in range(100) if variant_of(f"c-{i}") == "b")
    decision = Customer(engine_of(AB_TEST), customer_id=customer_id).does("signup")
    assert actions(decision) == [("j", "offer_b")]
    assert decision.commands[0].reason == "A/B test (journey j v1, step offer_b, variant b)"


def test_the_holdout_gets_every_action_held_back_but_stays_in_the_journey():
    customer_id = next(f"c-{i}" for i in range(200) if variant_of(f"c-{i}") == "holdout")
    customer = Customer(engine_of(AB_TEST), customer_id=customer_id)
    decision = customer.does("signup")
    assert decision.commands == []
    assert held(decision) == [("offer_a", "holdout")]
    assert customer.journeys == {"j": "wait"}
    assert customer.state.journeys["j"]["holdout"] is True
    later = customer.wakes(DAY)
    assert later.commands == []
    assert held(later) == [("later", "holdout")]
    assert outcomes(later) == [("exit", "j", "completed")]


def test_the_holdout_s_held_actions_are_not_counted_as_contacts():
    customer_id = next(f"c-{i}" for i in range(200) if variant_of(f"c-{i}") == "holdout")
    customer = Customer(engine_of(AB_TEST), customer_id=customer_id)
    customer.does("signup")
    assert customer.state.contacts == {}


def test_a_second_split_is_refused_so_a_holdout_cannot_be_split_again_into_a_contacted_arm():
    journey = define(
        """
        - {id: first, split: [{variant: a, percent: 50}, {holdout: true, percent: 50}]}
        - {id: again, split: [{variant: x, percent: 50}, {variant: y, percent: 50}]}
        """
    )
    errors, _ = review(journey)
    assert [(e.line, e.message.split(":")[0]) for e in errors] == [(6, "split 'again'")]  # the 6th line of the file
    assert "a journey has one split, and 'first' is it" in errors[0].message


def test_passing_the_split_again_keeps_the_arm_and_counts_it_once():
    journey = define(
        """
        - {id: test, split: [{variant: a, percent: 50}, {holdout: true, percent: 50}]}
        - {id: hi, action: {channel: email, action: hi}}
        - {id: nap, wait: 1d}
        - branch: [{else: true, next: test}]
        """
    )
    policy = Policy(rules=frozenset(), frequency_cap_per_day=100)
    for n in range(20):
        customer = Customer(engine_of(journey), f"c-{n}", policy=policy)
        first = customer.does("signup")
        again = customer.wakes(DAY)
        assigned = [o.variant for o in first.outcomes + again.outcomes if o.kind == "assign"]
        assert len(assigned) == 1
        contacted = first.commands + again.commands
        assert len(contacted) == (0 if assigned == ["holdout"] else 2)


def test_a_long_journey_without_a_loop_runs_to_its_end_in_one_go():
    """Steps are not counted: only a step that comes round again in one run is a loop."""
    steps = "\n".join(f"- action: {{channel: web, action: banner_{i}}}" for i in range(100))
    decision = Customer(engine_of(define(steps)), policy=Policy(rules=frozenset(), frequency_cap_per_day=1000)).does(
        "signup"
    )
    assert outcomes(decision) == [("enter", "j", ""), ("exit", "j", "completed")]
    assert len(decision.commands) == 100


# --- re-entry and how many journeys at once -------------------------------------------------------


def reentering(policy: str) -> Compiled:
    return define("- action: {channel: email, action: hi}", head=f"trigger: {{event: page_view}}\nreentry: {policy}")


def test_reentry_once_lets_a_customer_in_only_the_first_time():
    customer = Customer(engine_of(reentering("once")))
    assert actions(customer.does("page_view")) == [("j", "hi")]
    assert customer.does("page_view", at=30 * DAY).outcomes == []
    assert customer.state.journey_log["j"]["entries"] == 1


def test_reentry_always_lets_a_customer_in_every_time():
    customer = Customer(engine_of(reentering("always")))
    for day in range(3):
        assert actions(customer.does("page_view", at=day * DAY)) == [("j", "hi")]
    assert customer.state.journey_log["j"]["entries"] == 3


def test_reentry_cooldown_counts_from_the_last_exit():
    journey = define(
        "- wait: 1d\n- action: {channel: email, action: hi}",
        head="trigger: {event: page_view}\nreentry: {policy: cooldown, cooldown: 2d}",
    )
    customer = Customer(engine_of(journey))
    customer.does("page_view")
    customer.wakes(DAY)  # completes: last exit at day 1
    assert customer.does("page_view", at=3 * DAY - 1).outcomes == []
    assert outcomes(customer.does("page_view", at=3 * DAY)) == [("enter", "j", "")]


def test_a_customer_inside_a_journey_is_not_entered_again_by_its_trigger():
    journey = define(
        "- wait: 1d\n- action: {channel: email, action: hi}", head="trigger: {event: page_view}\nreentry: always"
    )
    customer = Customer(engine_of(journey))
    customer.does("page_view")
    assert customer.does("page_view", at=HOUR).outcomes == []
    assert customer.next_wake == DAY  # the wait was not restarted


def test_max_active_blocks_a_further_journey_and_says_so():
    first = define("- wait: 1d", id="first")
    second = define("- wait: 1d", id="second")
    customer = Customer(engine_of(first, second, max_active=1))
    decision = customer.does("signup")
    assert outcomes(decision) == [("enter", "first", ""), ("blocked", "second", "max_active")]
    assert customer.journeys == {"first": "step1"}
    customer.wakes(DAY)  # first completes
    assert outcomes(customer.does("signup", at=2 * DAY)) == [("enter", "second", "")]


def test_a_customer_outside_the_audience_is_not_reported_as_blocked():
    first = define("- wait: 1d", id="first")
    picky = define("- wait: 1d", id="picky", head="trigger: {event: signup}\naudience: state.purchases > 0")
    decision = Customer(engine_of(first, picky, max_active=1)).does("signup")
    assert outcomes(decision) == [("enter", "first", "")]


# --- hostile definitions --------------------------------------------------------------------------


def test_steps_that_loop_without_waiting_end_the_journey_with_reason_loop():
    journey = define("- id: again\n  branch:\n    - {else: true, next: again}")
    customer = Customer(engine_of(journey))
    decision = customer.does("signup")
    assert outcomes(decision) == [("enter", "j", ""), ("exit", "j", "loop")]
    assert customer.journeys == {}


def test_a_loop_through_several_steps_also_ends_with_reason_loop():
    journey = define(
        """
        - id: one
          branch: [{when: "true", next: two}]
        - id: two
          branch: [{when: "state.events >= 0", next: one}]
        """
    )
    assert outcomes(Customer(engine_of(journey)).does("signup"))[-1] == ("exit", "j", "loop")


def test_a_loop_through_an_action_does_not_send_it_over_and_over():
    journey = define("- id: spam\n  action: {channel: email, action: spam}\n  next: spam")
    decision = Customer(engine_of(journey)).does("signup")
    assert outcomes(decision)[-1] == ("exit", "j", "loop")
    assert len(decision.commands) + len(decision.held) <= 1


def test_a_zero_length_wait_is_refused_so_a_loop_through_it_can_never_spin_the_timer():
    with pytest.raises(InvalidJourney, match="longer than zero"):
        define("- id: tick\n  wait: 0s\n- branch: [{else: true, next: tick}]")


def test_a_loop_through_a_short_wait_only_runs_once_per_wait():
    journey = define(
        "- id: tick\n  wait: 1h\n- action: {channel: email, action: tick}\n- branch: [{else: true, next: tick}]"
    )
    customer = Customer(engine_of(journey), policy=Policy(rules=frozenset(), frequency_cap_per_day=100))
    customer.does("signup")
    decision = customer.wakes(5 * HOUR + 1)
    assert [c.issued_at - T0 for c in decision.commands] == [HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 5 * HOUR]
    assert customer.next_wake == 6 * HOUR


# --- versions -------------------------------------------------------------------------------------


def versioned(version: int) -> Compiled:
    return define(f"- wait: 1d\n- action: {{channel: email, action: hello_v{version}}}", version=version)


def test_customers_finish_the_version_they_entered_and_newcomers_enter_the_newest():
    catalogue = Catalogue.of([versioned(1)])
    engine = Engine(catalogue)
    early = Customer(engine, customer_id="early")
    early.does("signup")
    catalogue.add(versioned(2))
    late = Customer(engine, customer_id="late")
    assert [(o.kind, o.version) for o in late.does("signup", at=HOUR).outcomes] == [("enter", 2)]
    decision = early.wakes(DAY)
    assert actions(decision) == [("j", "hello_v1")]
    assert "journey j v1" in decision.commands[0].reason
    assert [(o.kind, o.version) for o in decision.outcomes] == [("exit", 1)]
    assert actions(late.wakes(DAY + HOUR)) == [("j", "hello_v2")]


def test_a_customer_whose_version_is_removed_leaves_the_journey_on_the_next_wake():
    catalogue = Catalogue.of([versioned(1)])
    customer = Customer(Engine(catalogue))
    customer.does("signup")
    catalogue.add(versioned(2))
    del catalogue.versions["j"][1]
    decision = customer.wakes(DAY)
    assert decision.commands == []
    assert [(o.kind, o.journey, o.version, o.reason) for o in decision.outcomes] == [
        ("exit", "j", 1, "version_removed")
    ]
    assert customer.journeys == {}
    assert customer.state.next_wake() is None


def test_a_customer_whose_version_is_removed_leaves_the_journey_on_the_next_event():
    customer = Customer(engine_of(versioned(1)))
    customer.does("signup")
    customer.engine = engine_of(versioned(2))
    decision = customer.does("page_view", at=HOUR)
    assert decision.outcomes == [Outcome("exit", "j", 1, "version_removed")]
    assert customer.journeys == {}


def test_a_retired_journey_takes_no_newcomers_but_lets_its_customers_finish():
    catalogue = Catalogue.of([versioned(1)])
    inside = Customer(Engine(catalogue), customer_id="inside")
    inside.does("signup")
    catalogue.retire("j")
    assert Customer(Engine(catalogue), customer_id="new").does("signup").outcomes == []
    assert actions(inside.wakes(DAY)) == [("j", "hello_v1")]


# --- priority and the contact policy --------------------------------------------------------------


def immediate(id: str, priority: int, channel: str = "email") -> Compiled:
    return define(f"- action: {{channel: {channel}, action: {id}_hello, priority: {priority}}}", id=id)


def test_higher_priority_actions_come_first_in_one_decision():
    engine = engine_of(immediate("a_low", 10), immediate("b_high", 90), immediate("c_mid", 50))
    decision = Customer(engine).does("signup")
    assert [c.action for c in decision.commands] == ["b_high_hello", "c_mid_hello", "a_low_hello"]


def test_the_frequency_cap_holds_back_the_less_important_journey_action_the_same_day():
    engine = engine_of(immediate("a_low", 10), immediate("b_high", 90))
    customer = Customer(engine, policy=Policy(frequency_cap_per_day=1, rules=frozenset()))
    decision = customer.does("signup")
    assert actions(decision) == [("b_high", "b_high_hello")]
    assert held(decision) == [("a_low_hello", "frequency_cap")]


def test_the_frequency_cap_applies_to_actions_fired_by_a_timer():
    engine = engine_of(immediate("now", 50), HELLO_IN_AN_HOUR)
    customer = Customer(engine, policy=Policy(frequency_cap_per_day=1, rules=frozenset()))
    assert actions(customer.does("signup")) == [("now", "now_hello")]
    decision = customer.wakes(HOUR)
    assert decision.commands == []
    assert held(decision) == [("hello", "frequency_cap")]
    assert outcomes(decision) == [("exit", "j", "completed")]


def test_a_journey_action_on_a_channel_without_consent_is_held_back_and_the_journey_goes_on():
    customer = Customer(engine_of(HELLO_IN_AN_HOUR))
    customer.does("consent", channel="email", granted=False)
    customer.does("signup", at=MINUTE)
    decision = customer.wakes(MINUTE + HOUR)
    assert decision.commands == []
    assert held(decision) == [("hello", "no_consent")]
    assert outcomes(decision) == [("exit", "j", "completed")]


def test_journeys_do_not_act_through_the_built_in_rules_when_those_are_off():
    journey = define("- wait: 1d", head="trigger: {event: product_view}")
    decision = Customer(engine_of(journey)).does("product_view", product="sku-1")
    assert decision.commands == []


# --- purity ---------------------------------------------------------------------------------------

STORY = [
    ("signup", 0.0, {}),
    (WAKE, HOUR, {}),
    ("email_click", 2 * HOUR, {"campaign": "spring"}),
    ("page_view", 3 * DAY, {}),
    (WAKE, 10 * DAY, {}),
    ("purchase", 11 * DAY, {"value": 5.0}),
    (WAKE, 40 * DAY, {}),
]


def renamed(journey: Compiled, new_id: str, extra: str = "") -> Compiled:
    """The same journey under another id, optionally with more top-level fields."""
    source = journey.source.replace("id: j\n", f"id: {new_id}\n{extra}", 1)
    return compile_text(source, f"{new_id}.yaml")


def story_engine() -> Engine:
    return engine_of(
        renamed(HELLO_IN_AN_HOUR, "hello"),
        renamed(WAIT_FOR_A_CLICK, "click", "goal: {event: purchase}\n"),
        renamed(AB_TEST, "ab"),
        renamed(AT_TEN, "ten"),
        max_active=5,
    )


def test_decide_never_mutates_the_state_it_is_given_for_events_and_wakes():
    customer = Customer(story_engine())
    for type, at, props in STORY:
        previous = customer.state
        before = previous.to_bytes() if previous is not None else None
        decision = customer.wakes(at) if type == WAKE else customer.does(type, at, **props)
        if previous is not None:
            assert previous.to_bytes() == before, f"decide changed the state it was given on {type} at {at}"
            assert decision.state is not previous


def test_a_journey_resumes_from_state_stored_as_bytes():
    customer = Customer(engine_of(HELLO_IN_AN_HOUR))
    customer.does("signup")
    stored = CustomerState.from_bytes(customer.state.to_bytes())
    assert stored == customer.state
    direct = customer.wakes(HOUR)
    customer.state = stored
    resumed = customer.wakes(HOUR)
    assert [c.to_wire() for c in resumed.commands] == [c.to_wire() for c in direct.commands]


def test_the_same_story_gives_the_same_decisions():
    def run() -> list[list[dict]]:
        customer = Customer(story_engine())
        out = []
        for type, at, props in STORY:
            decision = customer.wakes(at) if type == WAKE else customer.does(type, at, **props)
            out.append([c.to_wire() for c in decision.commands])
        return out

    first = run()
    assert first == run()
    assert sum(len(commands) for commands in first) >= 4


# --- bugs -----------------------------------------------------------------------------------------


def test_an_exit_condition_sees_the_event_that_started_the_journey_as_trigger():
    journey = define(
        "- wait: 1d\n- action: {channel: email, action: cart_reminder}",
        head="trigger: {event: add_to_cart}\n"
        "exit_on:\n  - event: remove_from_cart\n    when: event.properties.product == trigger.properties.product",
    )
    customer = Customer(engine_of(journey))
    customer.does("add_to_cart", product="sku-1")
    decision = customer.does("remove_from_cart", at=HOUR, product="sku-2")  # a different product
    assert decision.outcomes == []
    assert customer.journeys == {"j": "step1"}


def test_catching_up_on_a_wait_judges_the_customer_as_they_were_when_it_fell_due():
    journey = define(
        """
        - wait: 5d
        - branch:
          - {when: "state.purchases == 0", next: tips}
          - {else: true, next: done}
        - {id: tips, action: {channel: email, action: tips}}
        - {id: done, exit: completed}
        """
    )
    on_time = Customer(engine_of(journey))
    on_time.does("signup")
    assert actions(on_time.wakes(5 * DAY)) == [("j", "tips")]
    late_timer = Customer(engine_of(journey))
    late_timer.does("signup")
    decision = late_timer.does("purchase", at=6 * DAY, value=10.0)  # the day-5 timer did not come in time
    assert actions(decision) == [("j", "tips")]


CANNOT_CARRY = "which a command cannot carry"


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ('{{ timestamp("2024-01-01T00:00:00Z") }}', CANNOT_CARRY),
        ('{{ duration("1h") }}', CANNOT_CARRY),
        ('{{ [b"raw"] }}', CANNOT_CARRY),
        ('{{ {"at": duration("1s")} }}', CANNOT_CARRY),
        ("{{ 1.0 / 0.0 }}", "gives Infinity, " + CANNOT_CARRY),
        ('{{ {"a": [double("nan")]} }}', "gives NaN, " + CANNOT_CARRY),
        ("x={{ -1.0 / 0.0 }}", "gives -Infinity, which text cannot show"),
        ('b={{ b"hi" }}', "gives a bytes, which text cannot show"),
    ],
)
def test_a_template_whose_value_no_command_can_carry_skips_the_action_and_says_why(template, why):
    journey = define(
        f"""
        - action: {{channel: email, action: broken, payload: {{x: '{template}'}}}}
        - action: {{channel: email, action: fine}}
        """
    )
    decision = Customer(engine_of(journey)).does("signup")
    assert actions(decision) == [("j", "fine")]
    kind, _, reason = outcomes(decision)[1]
    assert kind == "condition_error" and why in reason


# --- conversions after leaving (conversion_window) ------------------------------------------------

AD_THEN_DONE = define(
    """
    - wait: 1h
    - {id: ad, action: {channel: ads, action: remarketing_ad, payload: {product: '{{ trigger.properties.product }}'}}}
    """,
    head="""
    trigger: {event: product_view}
    goal: {event: purchase, when: 'event.properties.product == trigger.properties.product'}
    conversion_window: 2d
    reentry: always
    """,
    id="ad",
)


def test_a_goal_within_the_conversion_window_after_the_journey_ended_counts_once_for_it():
    person = Customer(engine_of(AD_THEN_DONE), "c-1")
    person.does("product_view", product="tent")
    assert [c.action for c in person.timer_until(2 * HOUR)] == ["remarketing_ad"]
    assert person.journeys == {}
    bought = person.does("purchase", at=DAY, product="tent")
    assert outcomes(bought) == [("convert", "ad", "after_exit")]
    assert outcomes(person.does("purchase", at=DAY + HOUR, product="tent")) == []  # once
    assert person.state is not None and person.state.journey_log["ad"]["conversions"] == 1


def test_a_goal_after_the_conversion_window_or_not_matching_the_trigger_is_not_a_conversion():
    person = Customer(engine_of(AD_THEN_DONE), "c-1")
    person.does("product_view", product="tent")
    person.timer_until(2 * HOUR)
    assert outcomes(person.does("purchase", at=DAY, product="lamp")) == []
    assert outcomes(person.does("purchase", at=3 * DAY, product="tent")) == []


def test_without_a_conversion_window_only_goals_inside_the_journey_count():
    plain = define(
        AD_THEN_DONE.source.split("steps:")[1], head="trigger: {event: product_view}\ngoal: {event: purchase}"
    )
    person = Customer(engine_of(plain), "c-1")
    person.does("product_view", product="tent")
    person.timer_until(2 * HOUR)
    assert outcomes(person.does("purchase", at=HOUR * 3, product="tent")) == []


def test_entering_again_closes_the_window_of_the_instance_before():
    person = Customer(engine_of(AD_THEN_DONE), "c-1")
    person.does("product_view", product="tent")
    person.timer_until(2 * HOUR)
    person.does("product_view", at=3 * HOUR, product="lamp")  # a new instance, about the lamp
    bought = person.does("purchase", at=4 * HOUR, product="tent")
    assert ("convert", "ad", "after_exit") not in outcomes(bought)


def test_a_conversion_after_leaving_is_credited_to_the_arm_the_customer_was_in():
    split = define(
        """
        - split: [{variant: a, percent: 50}, {holdout: true, percent: 50}]
        - {id: hello, action: {channel: email, action: hello}}
        """,
        head="trigger: {event: signup}\ngoal: {event: purchase}\nconversion_window: 7d",
    )
    arms = Counter()
    for n in range(40):
        person = Customer(engine_of(split), f"c-{n}")
        person.does("signup")
        converted = [o for o in person.buys("x", at=DAY).outcomes if o.kind == "convert"]
        assert [o.reason for o in converted] == ["after_exit"]
        arms[converted[0].variant] += 1
    assert set(arms) == {"a", "holdout"} and sum(arms.values()) == 40


def test_each_wait_fired_is_reported_with_its_own_due_time_for_the_lateness_metric():
    """Two journeys' waits due before one event are two firings, and a wait that fires into an
    overdue wait is two: the worker observes timer lateness once per firing, not per decision."""
    one = define("- wait: 10s\n- {action: {channel: email, action: a}}", head="trigger: {event: page_view}", id="a")
    two = define(
        "- wait: 20s\n- wait: 5s\n- {action: {channel: email, action: b}}", head="trigger: {event: page_view}", id="b"
    )
    engine = Engine(Catalogue.of([one, two]))
    state = decide(None, Event("p-1", "page_view", T0, "c", "web", T0, "c"), T0, engine=engine).state
    decision = decide(state, Event("v-1", "page_view", T0 + 100, "c", "web", T0 + 100, "c"), T0 + 100, engine=engine)
    assert sorted(decision.fired) == [T0 + 10, T0 + 20, T0 + 25]
