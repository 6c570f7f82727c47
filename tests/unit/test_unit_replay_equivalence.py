"""The shortcuts that make offline replay fast change nothing it decides.

Replay updates states in place instead of copying them, and conditions get only the
fields they read, with results remembered by input. Each test runs the same history
through the fast path and through the plain one (a copy per decision, every variable
converted whole, nothing remembered) and compares commands, held-back commands,
outcomes, summaries and final states.
"""

from __future__ import annotations

import random
from dataclasses import astuple, fields
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from orchestrator.core.decide import Decision, decide
from orchestrator.core.event import Event, customer_key
from orchestrator.core.policy import Policy
from orchestrator.core.state import CustomerState
from orchestrator.identity.records import Forward, Profile, Suppressed
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.conditions import Condition, prune
from orchestrator.journeys.context import Context
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import Compiled, compile_text, load_dir
from orchestrator.replay import Replay
from orchestrator.simulator import Simulator

JOURNEYS = Path(__file__).parents[2] / "journeys"
T0 = 1_790_000_000.0
DAY = 86400.0
SIZE = 600  # events per history: enough for merges, erasures, conversions and errors

# Odd conditions and templates: whole variables, methods, comprehensions, missing fields,
# type errors, text templates. Beside the six shipped journeys, so every kind of read runs.
PROBE = """
id: probe
version: 1
description: Conditions of every shape
trigger:
  event: [product_view, purchase, search, add_to_cart]
  when: size(state) > 3 && (has(event.properties.product) || event.properties.size() > 0)
audience: state.consent.nosuch == 1 || state.events >= 1
goal:
  event: purchase
  when: trigger.properties.products.exists(p, p.id == "sku-a") || state.stage == "repeat"
exit_on:
  - event: consent
    when: state.consent.ads == false
reentry: always
steps:
  - id: look
    wait:
      event: [page_view, email_open]
      when: event.properties.campaign == "autumn" || event.type == "page_view"
      timeout: 2h
      on_event: act
      on_timeout: act
  - id: act
    action:
      channel: web
      action: probe
      payload:
        state: '{{ state }}'
        cart: '{{ state.cart }}'
        first: '{{ state.purchased.size() > 0 ? state.purchased[0] : "none" }}'
        trigger: '{{ trigger }}'
        text: 'seen {{ state.events }} events, last {{ trigger.type }} on {{ trigger.channel }}'
  - id: branch
    branch:
      - when: state.type_counts.search > 2 && state.cart_size >= 0
        next: bad
      - else: true
        next: done
  - id: bad
    action:
      channel: web
      action: probe_bad
      payload: {double: '{{ trigger.properties.price * 2 }}'}
  - id: done
    exit: completed
"""


def engine(*extra: Compiled) -> Engine:
    journeys, errors = load_dir(JOURNEYS)
    assert not errors
    return Engine(Catalogue.of([*journeys, *extra]))


def probe() -> Compiled:
    return compile_text(PROBE, "probe.yaml")


def history(count: int, seed: int) -> list[Event]:
    """Simulated traffic plus what the simulator never sends: anonymous visitors who log in
    (links and merges), shared e-mails, sign-ups, preferences, opt-outs, erasures,
    redeliveries and a few late events."""
    rng = random.Random(seed)
    sim = Simulator(customers=120, seed=seed, run_id=f"eq{seed}")
    events: list[Event] = []
    for i in range(count):
        ts = T0 + 20 * DAY * i / count - (rng.uniform(0, 3600) if rng.random() < 0.05 else 0.0)
        person = f"sim-eq{seed}-{rng.randrange(120):04d}"
        roll = rng.random()
        if roll < 0.70:
            events += [_simulated(out.channel, out.event, ts, rng) for out in sim.records(ts) if out.event]
        elif roll < 0.93 or not events:
            events.append(_extra(len(events), person, ts, rng))
        else:
            events.append(rng.choice(events))  # redelivered: same event id
    return events


def _simulated(channel: str, doc: dict[str, Any], ts: float, rng: random.Random) -> Event:
    ids = {"email": f"{doc['customer_id']}@example.com"} if rng.random() < 0.1 else {}
    cid = doc["customer_id"]
    return Event(doc["event_id"], doc["type"], ts, customer_key(cid, ids), channel, ts, cid, ids, doc["properties"])


def _extra(n: int, person: str, ts: float, rng: random.Random) -> Event:
    cookie = {"cookie": f"ck-{rng.randrange(200)}"}
    kind, cid, ids, props = rng.choice(
        [
            ("product_view", None, cookie, {"product": rng.choice(["sku-a", "sku-tent-2p"])}),
            ("add_to_cart", None, cookie, {"product": "sku-a", "price": 10.0, "qty": 2}),
            ("purchase", None, cookie, {"products": [{"id": "sku-a", "price": 10.0, "qty": 1}], "value": 10.0}),
            ("identify", person, cookie, {}),
            ("identify", person, {**cookie, "email": f"sim-eqx-{rng.randrange(120):04d}@example.com"}, {}),
            ("signup", person, {}, {}),
            ("remove_from_cart", person, {}, {"product": rng.choice(["sku-headlamp", "sku-a"])}),
            ("preferences", person, {}, {"timezone": rng.choice(["Europe/Berlin", "America/New_York"])}),
            ("preferences", person, {}, {"quiet_hours": rng.choice([{"start": "21:00", "end": "08:00"}, None])}),
            ("consent", person, {}, {"do_not_contact": rng.random() < 0.5}),
            ("consent", person, {}, {"channel": "ads", "granted": False}),
            ("erase", person, {}, {"suppress": rng.random() < 0.5}),
            ("page_view", person, {}, {"page": "/"}),
        ]
    )
    return Event(f"x-{n}", kind, ts, customer_key(cid, ids), "web", ts, cid, ids, props)


def plain_value(self: Condition, context: Any) -> Any:
    """How a condition was evaluated before: every variable it names, converted whole."""
    return self.program.execute({name: context[name] for name in self.names})


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run something with plain condition evaluation."""

    def run(function: Any, *args: Any, **kwargs: Any) -> Any:
        with monkeypatch.context() as patch:
            patch.setattr(Condition, "value", plain_value)
            return function(*args, **kwargs)

    return run


def replayed(events: list[Event], policy: Policy, *, in_place: bool) -> tuple[Any, ...]:
    player = Replay(policy, engine(probe()), in_place=in_place)
    commands = [c.to_wire() for c in player.run(events, until=events[-1].ts + 100 * DAY)]
    return commands, player.summary.as_dict(), {key: _record(r) for key, r in player.records.items()}


def _record(record: Any) -> Any:
    return record.state.to_dict() if isinstance(record, Profile) else record


def decided(events: list[Event], policy: Policy, *, in_place: bool) -> tuple[list[Any], dict[str, Any]]:
    """Every event through decide() directly, per customer key, as the bench does."""
    eng = engine(probe())
    states: dict[str, CustomerState] = {}
    decisions = []
    for event in events:
        decision = decide(states.get(event.customer_key), event, event.ts, policy, eng, in_place=in_place)
        states[event.customer_key] = decision.state
        decisions.append(_decision(decision))
    return decisions, {key: state.to_dict() for key, state in states.items()}


def _decision(decision: Decision) -> tuple[Any, ...]:
    return (
        [c.to_wire() for c in decision.commands],
        [(h.command.to_wire(), h.reason) for h in decision.held],
        [astuple(o) for o in decision.outcomes],
        decision.duplicate,
    )


POLICIES = {
    "journeys only": Policy(rules=frozenset()),
    "with rules": Policy(),
    "opt-in email, tight cap": Policy(consent_required_channels=frozenset({"email"}), frequency_cap_per_day=1),
}


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_fast_replay_gives_what_plain_replay_gives(policy: Policy, plain: Any) -> None:
    events = history(SIZE, seed=1)

    fast = replayed(events, policy, in_place=True)
    slow = plain(replayed, events, policy, in_place=False)

    assert fast[0] == slow[0]  # commands, in order, ids included
    assert fast[1] == slow[1]
    assert fast[2] == slow[2]


def test_fast_decisions_give_what_plain_decisions_give(plain: Any) -> None:
    events = history(SIZE, seed=2)

    fast = decided(events, Policy(), in_place=True)
    slow = plain(decided, events, Policy(), in_place=False)

    assert fast[0] == slow[0]  # commands, held back, outcomes (condition errors too)
    assert fast[1] == slow[1]


def test_the_history_reaches_what_the_shortcuts_touch() -> None:
    events = history(SIZE, seed=1)
    commands, summary, records = replayed(events, Policy(), in_place=True)
    decisions, _ = decided(events, Policy(), in_place=True)
    outcomes = {outcome[0] for decision in decisions for outcome in decision[2]}
    reasons = [outcome[3] for decision in decisions for outcome in decision[2] if outcome[0] == "condition_error"]

    assert summary["duplicates"] > 0 and summary["conversions"]
    assert {"probe", "welcome", "upsell", "remarketing_stop"} <= {c["action"] for c in commands}
    assert any(reason.startswith("bad: ") for reason in reasons)  # a template that fails
    assert any(isinstance(r, Forward) for r in records.values())
    assert any(isinstance(r, Suppressed) for r in records.values())
    assert any(len(r["aliases"]) > 1 for r in records.values() if isinstance(r, dict))  # merged profiles
    assert {"enter", "exit", "convert", "condition_error", "blocked"} <= outcomes


def test_a_remembered_payload_is_never_shared_between_commands() -> None:
    condition = Condition.compile("state.cart")
    state = CustomerState(key="c", cart={"sku-a": {"qty": 1, "price": 10.0}})
    given = [condition.value(Context(state, None, T0)) for _ in range(3)]  # computed, then remembered twice
    given[0]["sku-a"]["qty"] = 98
    given[1]["sku-a"]["qty"] = 99

    assert given[2] == {"sku-a": {"qty": 1, "price": 10.0}}
    assert condition.value(Context(state, None, T0)) == given[2]
    assert state.cart["sku-a"]["qty"] == 1


def test_a_wait_due_exactly_when_the_next_event_arrives_fires_first() -> None:
    eng = engine()
    add = Event("a", "add_to_cart", T0, "c-1", "web", T0, "c-1", {}, {"product": "sku-a", "price": 5.0})
    visit = Event("b", "store_visit", T0 + 3600, "c-1", "store", T0 + 3600, "c-1", {}, {})
    state = decide(None, add, T0, Policy(rules=frozenset()), eng, in_place=True).state

    decision = decide(state, visit, T0 + 3600, Policy(rules=frozenset()), eng, in_place=True)

    assert [c.action for c in decision.commands] == ["cart_reminder"]


def test_typed_inputs_are_told_apart_when_remembered() -> None:
    condition = Condition.compile("type(trigger.properties.v) == int ? 'int' : string(trigger.properties.v)")
    results = [
        condition.value(Context(CustomerState(key="c"), None, T0, trigger={"properties": {"v": v}}))
        for v in (1, 1.0, "1", 1, -0.0, 0.0, 2**63)
    ]

    assert results == ["int", "1", "1", "int", "-0", "0", "9223372036854775808"]


EXPRESSIONS = [
    "state.purchases == 3",
    "has(event.properties.product) || has(event.properties.query)",
    "has(state.consent.email) && state.consent.email == false",
    "state.cart",
    "state",
    "size(state) > 5",
    "state.size() > 5",
    "state.cart.size() > 0 && state.cart_size > 0",
    "state.purchased.exists(p, p == 'sku-a')",
    "trigger.properties.products.exists(p, p.id == 'sku-a')",
    "[1].exists(state, state == 1) || state.events > 0",
    "event.properties.state == state.stage",
    "event.properties['product'] == 'sku-a'",
    "event.properties.size()",
    "event",
    "trigger",
    "trigger.type + ':' + event.type",
    "state.consent.nosuch == 1",
    "state.consent.nosuch == 1 || state.events > 0",
    "state.cart.nosuch",
    "event.properties.price * 2",
    "now - state.last_seen",
    "'state.cart' == \"x\" || state.revenue > 1.5",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_a_condition_sees_what_it_would_see_whole(expression: str) -> None:
    """Value or error, field-pruned and remembered evaluation equals plain evaluation."""
    condition = Condition.compile(expression)
    for context in _contexts():
        for _ in range(2):  # the second time from memory
            assert _outcome(condition.value, context) == _outcome(partial(plain_value, condition), context)


def _contexts() -> list[Context]:
    state = CustomerState(
        key="c-1",
        customer_id="c-1",
        events=4,
        purchases=1,
        revenue=10.5,
        type_counts={"purchase": 1, "add_to_cart": 2},
        cart={"sku-a": {"qty": 2, "price": 10.0}},
        purchased={"sku-b": T0},
        consent={"email": False},
        last_seen=T0,
    )
    view = Event("e-1", "product_view", T0, "c-1", "web", T0, "c-1", {}, {"product": "sku-a", "price": 5.0})
    buy = Event(
        "e-2", "purchase", T0, "c-1", "store", T0, "c-1", {}, {"products": [{"id": "sku-a"}], "state": "customer"}
    )
    trigger = {"event_id": "e-0", "type": "search", "channel": "search", "ts": T0, "properties": {"query": "q"}}
    return [
        Context(state, view, T0 + 60),
        Context(state, buy, T0 + 60, trigger=trigger),
        Context(CustomerState(key="anon"), None, T0, trigger=trigger),
        Context(CustomerState(key="anon"), None, T0),
    ]


def _outcome(evaluate: Any, context: Context) -> tuple[str, Any]:
    try:
        return ("value", evaluate(context))
    except Exception as exc:  # the engine counts any error as a condition error, by its repr
        return ("error", repr(exc))


@pytest.mark.parametrize(
    ("expression", "reads"),
    [
        ("state.purchases == 3", {"state": (("purchases", None),)}),
        ("has(state.consent.email)", {"state": (("consent", (("email", None),)),)}),
        ("state.cart.size() > 0", {"state": (("cart", None),)}),
        ("state.a.b == 1 && state.a == {}", {"state": (("a", None),)}),
        ("size(state) > 1", {"state": None}),
        ("state['cart']", {"state": None}),
        ("[1].map(state, state.x)", {"state": None}),
        ("event.properties.state == state.x", {"event": (("properties", (("state", None),)),), "state": None}),
        ("state.a == 1 // a comment", {"state": None}),
        ('state.a == "\\"" && size(state) > 0', {"state": None}),
        ("now > state.last_seen", {"now": None, "state": (("last_seen", None),)}),
    ],
)
def test_what_a_condition_reads_is_worked_out_conservatively(expression: str, reads: dict[str, Any]) -> None:
    assert dict(Condition.compile(expression).reads) == reads


def test_pruning_keeps_exactly_the_fields_read() -> None:
    value = {"a": {"b": 1, "c": 2}, "d": [1], "e": "x"}

    assert prune(value, (("a", (("b", None), ("z", None))), ("e", None))) == {"a": {"b": 1}, "e": "x"}
    assert prune(value, (("e", (("f", None),)),)) == {"e": "x"}  # not a map: left whole
    assert prune(value, None) is value


def test_thaw_copies_every_field_and_shares_no_container() -> None:
    state = CustomerState(key="k")
    for n, f in enumerate(fields(CustomerState)):  # a distinct, non-default value in every field
        default = getattr(state, f.name)
        setattr(state, f.name, _sample(default, f.name, n))
    state.journeys = {"j": {"step": "s", "wake": 1.0}}
    state.journey_log = {"j": {"entries": 1}}
    state.contacts = {"email": [1.0]}

    copy = state.thaw()

    assert copy == state
    for f in fields(CustomerState):
        value = getattr(state, f.name)
        if isinstance(value, (dict, list)):
            assert getattr(copy, f.name) is not value, f.name
    assert copy.journeys["j"] is not state.journeys["j"]
    assert copy.journey_log["j"] is not state.journey_log["j"]
    assert copy.contacts["email"] is not state.contacts["email"]


def _sample(default: Any, name: str, n: int) -> Any:
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)):
        return default + n + 1
    if isinstance(default, dict):
        return {name: n}
    if isinstance(default, list):
        return [name]
    return f"{name}-{n}"


def test_decide_in_place_updates_the_state_it_is_given_and_otherwise_leaves_it_alone() -> None:
    eng = engine()
    event = Event("e-1", "purchase", T0, "c-1", "web", T0, "c-1", {}, {"products": [{"id": "sku-a"}], "value": 5.0})
    state = CustomerState(key="c-1")
    before = state.to_dict()

    copied = decide(state, event, T0, Policy(), eng)
    assert state.to_dict() == before and copied.state is not state

    in_place = decide(state, event, T0, Policy(), eng, in_place=True)
    assert in_place.state is state and state.to_dict() == copied.state.to_dict()


def test_replay_in_place_still_links_an_identifier_it_learns() -> None:
    events = [
        Event("a", "page_view", T0, "c-1", "web", T0, "c-1", {}, {}),
        Event("b", "identify", T0 + 1, "c-1", "web", T0 + 1, "c-1", {"cookie": "ck"}, {}),
        Event("c", "page_view", T0 + 2, "cookie:ck", "web", T0 + 2, None, {"cookie": "ck"}, {}),
    ]
    player = Replay(Policy(), None)

    list(player.run(events))

    assert player.records["cookie:ck"] == Forward("c-1")
    state = player.state("c-1")
    assert state is not None and state.events == 3 and state.aliases == ["cookie:ck"]


def test_the_catalogue_forgets_its_lists_when_it_changes() -> None:
    journeys, _ = load_dir(JOURNEYS)
    catalogue = Catalogue.of(journeys)
    assert [j.id for j in catalogue.triggered_by("purchase")] == ["post_purchase", "repeat_thank_you", "win_back"]

    catalogue.retire("win_back")
    assert [j.id for j in catalogue.triggered_by("purchase")] == ["post_purchase", "repeat_thank_you"]
    assert "win_back" not in [j.id for j in catalogue.active()]

    catalogue.add(next(j for j in journeys if j.id == "win_back"))
    assert [j.id for j in catalogue.triggered_by("purchase")][-1] == "win_back"
    assert catalogue.triggered_by("no_such_type") == ()
