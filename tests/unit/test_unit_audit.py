"""The decision audit record, its plain-language rendering, and the decision log's batching."""

from __future__ import annotations

import asyncio
import json
from textwrap import dedent

import msgpack
import pytest
import stories
from stories import T0

from orchestrator.audit import decision_record, explain_lines, reason_sentence
from orchestrator.batching import FlushFailed
from orchestrator.core.commands import make_command
from orchestrator.core.decide import WAKE, Decision, decide
from orchestrator.core.event import Event
from orchestrator.core.policy import REASONS, Policy
from orchestrator.core.state import CustomerState
from orchestrator.decisionlog import DecisionLogWriter, decisions_key
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import compile_text

HOUR = 3600.0
DAY = 86400.0
RULES = Policy()

WELCOME = compile_text(
    dedent(
        """
        id: welcome
        version: 2
        description: Welcome
        trigger: {event: signup}
        goal: {event: purchase}
        steps:
          - wait: 1h
          - {id: hello, action: {channel: email, action: hello}}
          - wait: 1d
        """
    ),
    "welcome.yaml",
)


def customer(policy: Policy = RULES) -> stories.Customer:
    return stories.Customer(Engine(Catalogue.of([WELCOME])), customer_id="c-9", policy=policy)


def last_event(person: stories.Customer, type: str, at: float) -> Event:
    """The event ``person.does`` just decided (stories numbers them per customer)."""
    return Event(f"c-9-{type}-{person.count}", type, T0 + at, "c-9", "web", T0 + at, "c-9")


def record_of(person: stories.Customer, type: str, at: float = 0.0, **props) -> dict:
    decision = person.does(type, at, **props)
    return decision_record(last_event(person, type, at), decision, T0 + at + 0.25)


# --- the record -------------------------------------------------------------------------------


def test_a_record_says_who_what_when_and_what_was_sent():
    record = record_of(customer(), "search", query="tent")
    assert record["customer_key"] == "c-9"
    assert (record["event_id"], record["event_type"], record["channel"]) == ("c-9-search-1", "search", "web")
    assert (record["event_ts"], record["decided_at"]) == (T0, T0 + 0.25)
    (ad,) = record["sent"]
    assert (ad["channel"], ad["action"], ad["journey"]) == ("ads", "remarketing_ad", "remarketing")
    assert "searched for 'tent'" in ad["reason"]
    assert len(ad["action_id"]) == 32
    assert record["suppressed"] == []
    assert record["duplicate"] is False


def test_a_record_lists_what_was_held_back_with_a_code_and_a_sentence():
    person = customer()
    person.does("consent", channel="email", granted=False)
    record = record_of(person, "purchase", 60, products=[{"id": "sku-1"}], value=10.0)
    (upsell,) = record["suppressed"]
    assert upsell == {
        "action_id": upsell["action_id"],
        "channel": "email",
        "action": "upsell",
        "journey": "post_purchase",
        "reason": "no_consent",
        "detail": "the customer opted out of email",
        "issued_at": T0 + 60,
    }


def test_a_record_tells_what_happened_in_journeys():
    person = customer()
    entered = record_of(person, "signup")
    assert entered["journeys"] == [{"kind": "enter", "journey": "welcome", "version": 2, "reason": ""}]
    person.wakes(HOUR)
    converted = record_of(person, "purchase", 2 * HOUR, value=5.0)
    assert converted["journeys"] == [
        {"kind": "convert", "journey": "welcome", "version": 2, "reason": ""},
        {"kind": "exit", "journey": "welcome", "version": 2, "reason": "goal"},
    ]


def test_a_record_is_plain_json_and_msgpack():
    person = customer()
    person.does("consent", channel="email", granted=False)
    record = record_of(person, "purchase", 60, products=[{"id": "sku-1"}], value=10.0)
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert msgpack.unpackb(msgpack.packb(record, use_bin_type=True), raw=False) == record


def test_a_duplicate_is_recorded_as_such():
    person = customer()
    first = person.does("search", query="tent")
    event = last_event(person, "search", 0)
    record = decision_record(event, decide(first.state, event, T0 + 5), T0 + 5)
    assert record["duplicate"] is True
    assert record["sent"] == record["suppressed"] == []


def test_the_customer_key_is_the_profile_s_even_when_the_event_named_another():
    decision = Decision(state=CustomerState(key="c-1"))
    event = Event("e-1", "page_view", T0, "cookie:k1", "web", T0)
    assert decision_record(event, decision, T0)["customer_key"] == "c-1"


# --- sentences -------------------------------------------------------------------------------


def command(channel: str = "email", action: str = "upsell", journey: str = "post_purchase", ttl: float = HOUR):
    return make_command(
        customer_id="c-9",
        channel=channel,
        action=action,
        journey=journey,
        trigger="e-1",
        subject="s",
        payload={},
        reason="because",
        now=T0,
        ttl_s=ttl,
    )


@pytest.mark.parametrize("reason", REASONS)
def test_every_reason_code_has_a_plain_sentence(reason):
    sentence = reason_sentence(reason, command(), CustomerState(key="c-9"))
    assert sentence != f"held back ({reason})"
    assert len(sentence.split()) >= 5  # a sentence, not the code
    assert sentence[0].islower()


@pytest.mark.parametrize(
    ("state", "sentence"),
    [
        (CustomerState(key="c", consent={"email": False}), "the customer opted out of email"),
        (CustomerState(key="c", consent={"*": False}), "the customer opted out of every channel"),
        (CustomerState(key="c"), "the customer has not opted in to email, which needs consent first"),
    ],
)
def test_the_no_consent_sentence_says_which_consent_is_missing(state, sentence):
    assert reason_sentence("no_consent", command(), state) == sentence


def test_the_quiet_hours_sentence_shows_the_window_and_time_zone():
    state = CustomerState(key="c", timezone="Europe/Paris", quiet_hours={"start": "21:00", "end": "08:00"})
    sentence = reason_sentence("quiet_hours", command(), state)
    assert sentence == "it fell in the customer's quiet hours (21:00-08:00 Europe/Paris), and email respects them"


def test_the_expired_sentence_gives_both_times():
    sentence = reason_sentence("expired", command(ttl=HOUR), CustomerState(key="c"))
    assert sentence == (
        "it was due at 2027-01-15 08:00:00 UTC and expired at 2027-01-15 09:00:00 UTC, before it could go out"
    )


def test_an_unknown_reason_still_reads_as_something():
    assert reason_sentence("new_reason", command(), CustomerState(key="c")) == "held back (new_reason)"


# --- explain --------------------------------------------------------------------------------------


def test_explain_reads_like_the_story_of_each_decision():
    person = customer()
    records = [record_of(person, "consent", channel="email", granted=False)]
    records.append(record_of(person, "purchase", 2, products=[{"id": "sku-1"}], value=10.0, currency="EUR"))
    records.append(record_of(person, "search", 3, query="tent"))
    blocks = explain_lines(records)
    assert blocks[0] == "2027-01-15 08:00:00 UTC  consent on web (event c-9-consent-1)\n  nothing to send"
    assert blocks[1].splitlines() == [
        "2027-01-15 08:00:02 UTC  purchase on web (event c-9-purchase-2)",
        "  held back upsell on email: the customer opted out of email",
    ]
    assert blocks[2].splitlines()[1].startswith("  sent remarketing_ad on ads: searched for 'tent' on web")


def test_explain_shows_journeys_and_commands_that_were_due_earlier():
    person = customer()
    blocks = explain_lines([record_of(person, "signup"), record_of(person, "page_view", 3 * HOUR)])
    assert blocks[0].splitlines()[1] == "  entered journey welcome v2"
    assert blocks[1].splitlines()[1].startswith("  sent hello on email (due at 2027-01-15 09:00:00 UTC): Welcome")


def test_explain_says_when_a_journey_ends_and_why():
    person = customer()
    person.does("signup")
    lines = explain_lines([record_of(person, "purchase", 2 * HOUR, value=5.0)])[0].splitlines()
    assert "  converted in journey welcome v2: reached its goal" in lines
    assert "  left journey welcome v2: reached its goal" in lines


def test_explain_names_a_timer_wake_and_a_duplicate():
    person = customer()
    person.does("signup")
    wake = person.wakes(HOUR)
    wake_event = Event("timer", WAKE, T0 + HOUR, "c-9", "timer", T0 + HOUR)
    (block,) = explain_lines([decision_record(wake_event, wake, T0 + HOUR)])
    assert block.splitlines()[0] == "2027-01-15 09:00:00 UTC  a wait fell due (timer)"
    assert block.splitlines()[1].startswith("  sent hello on email: ")
    duplicate = {"event_ts": T0, "event_type": "search", "channel": "web", "event_id": "w-1", "duplicate": True}
    assert explain_lines([duplicate])[0].endswith("  already seen: a redelivered event, ignored")


def test_explain_reads_every_exit_reason():
    outcomes = [
        {"kind": "exit", "journey": "j", "version": 1, "reason": reason}
        for reason in (
            "completed",
            "exit_on:consent",
            "loop",
            "version_removed",
            "merged",
            "over_limit",
            "not_interested",
        )
    ]
    outcomes.append({"kind": "blocked", "journey": "k", "version": 3, "reason": "max_active"})
    record = {"event_ts": T0, "event_type": "x", "channel": "web", "event_id": "e", "journeys": outcomes}
    assert explain_lines([record])[0].splitlines()[1:] == [
        "  left journey j v1: completed every step",
        "  left journey j v1: a consent event ends it",
        "  left journey j v1: it looped without waiting and was stopped",
        "  left journey j v1: the version the customer was on was removed",
        "  left journey j v1: their profile merged into another that was in it too, and goes on there",
        "  left journey j v1: a merge left them in more journeys than the limit, and it was entered last",
        "  left journey j v1: exit step (not_interested)",
        "  did not enter journey k v3: already in as many journeys as allowed at once",
    ]


def test_explain_reads_a_delay_for_quiet_hours_and_a_conversion_after_leaving():
    outcomes = [
        {"kind": "delay", "journey": "j", "version": 1, "reason": "hello until 2027-01-16T08:00Z"},
        {"kind": "convert", "journey": "k", "version": 2, "reason": "after_exit", "variant": "a"},
    ]
    record = {"event_ts": T0, "event_type": "x", "channel": "web", "event_id": "e", "journeys": outcomes}
    assert explain_lines([record])[0].splitlines()[1:] == [
        "  journey j v1 holds step hello until the customer's quiet hours end at 2027-01-16T08:00Z",
        "  converted for journey k v2 (arm a): reached its goal within its conversion window after leaving it",
    ]


# --- the decision log's batching (no Redis needed: nothing listens on the port) -------------------


def test_a_failed_flush_keeps_the_newest_records_for_each_customer():
    async def scenario() -> DecisionLogWriter:
        writer = DecisionLogWriter("redis://127.0.0.1:1/0", "t.", kept=2, interval_s=0.001)
        for i in range(5):
            writer.stage("c-1", {"n": i})
        writer.stage("c-2", {"n": 9})
        with pytest.raises(FlushFailed):  # refused: everything is kept for the next attempt
            await writer.flush()
        writer.stage("c-1", {"n": 5})
        return writer

    writer = asyncio.run(scenario())
    assert writer.pending == 3
    assert [json.loads(r)["n"] for r in writer._pending[decisions_key("t.", "c-1")]] == [4, 5]


def test_a_record_that_is_not_plain_json_is_dropped_not_raised():
    async def scenario() -> int:
        writer = DecisionLogWriter("redis://127.0.0.1:1/0", "t.")
        writer.stage("c-1", {"n": float("nan")})
        return writer.pending

    assert asyncio.run(scenario()) == 0


def test_decisions_are_kept_under_the_topic_prefix():
    assert decisions_key("p.", "email:a@example.com") == "p.decisions:email:a@example.com"
