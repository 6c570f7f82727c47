"""Explicit migration rules: customers in flight move to a newer version when it says so.

The rules (see README, "Versions and migrations"): lazily, on the customer's next event or
wake, as of the earlier of that moment and their pending wait's due time; a mapped wait
waits as if the customer had been on the new step since they reached the old one; a
mapped step of another kind runs at once; unmapped steps stay or exit ("migration").
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest
from prometheus_client import REGISTRY
from stories import T0, Customer

from orchestrator import metrics
from orchestrator.audit import decision_record, explain_lines
from orchestrator.core.decide import Decision
from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.core.state import CustomerState
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine, JourneyRun, Outcome
from orchestrator.journeys.loader import (
    Compiled,
    InvalidJourney,
    JourneyError,
    check_migrations,
    compile_text,
    load_dir,
)

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).parent / "journeys_migration_example"


def journey(version: int, steps: str, migrate: str = "", head: str = "trigger: {event: signup}") -> Compiled:
    """Journey ``j`` at ``version``: its steps (a YAML list), an optional ``migrate:`` block."""
    text = f"id: j\nversion: {version}\n{dedent(head).strip()}\n"
    if migrate:
        text += f"migrate:\n{_indent(migrate)}"
    text += f"steps:\n{dedent(steps).strip()}\n"
    return compile_text(text, f"j.v{version}.yaml")


def _indent(block: str) -> str:
    return "".join(f"  {line}\n" for line in dedent(block).strip().splitlines())


def errors_of(text: str) -> list[JourneyError]:
    with pytest.raises(InvalidJourney) as caught:
        compile_text(dedent(text).lstrip(), "j.yaml")
    return caught.value.errors


def only_error(text: str) -> JourneyError:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    return errors[0]


def line_with(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(dedent(text).lstrip().splitlines(), 1) if needle in line)


def actions(decision: Decision) -> list[tuple[str, float]]:
    """What was sent, and when (seconds after T0)."""
    return [(c.action, c.issued_at - T0) for c in decision.commands]


def moves(decision: Decision) -> list[tuple[str, int, int, str]]:
    return [(o.kind, o.from_version, o.version, o.reason) for o in decision.outcomes if o.kind == "migrate"]


def where(customer: Customer) -> tuple[int, str, float | None] | None:
    """(version, step, wake after T0) of journey j, or None when the customer is not in it."""
    inst = customer.state.journeys.get("j") if customer.state is not None else None
    if inst is None:
        return None
    return inst["v"], inst["step"], None if inst["wake"] is None else inst["wake"] - T0


V1 = journey(
    1,
    """
    - id: first_wait
      wait: 1h
    - id: hello
      action: {channel: email, action: hello_v1, payload: {product: '{{ trigger.properties.product }}'}}
    - id: second_wait
      wait: 1d
    - id: bye
      action: {channel: email, action: bye_v1}
    """,
)


def v2(migrate: str, first: str = "1h", second: str = "1d", extra_steps: str = "") -> Compiled:
    steps = f"""
    - id: first_wait
      wait: {first}
    - id: hello
      action: {{channel: email, action: hello_v2, payload: {{product: '{{{{ trigger.properties.product }}}}'}}}}
    - id: second_wait
      wait: {second}
    - id: bye
      action: {{channel: email, action: bye_v2}}
    """
    return journey(2, dedent(steps) + dedent(extra_steps), migrate)


def inside_v1(*later: Compiled, at: float = 0.0) -> tuple[Customer, Catalogue]:
    """A customer who entered v1 at ``at``; then the ``later`` versions are published."""
    catalogue = Catalogue.of([V1])
    customer = Customer(Engine(catalogue))
    customer.does("signup", at=at, product="sku-lamp")
    for version in later:
        catalogue.add(version)
    return customer, catalogue


SAME_STEPS = "from: 1\nsteps: {first_wait: first_wait, second_wait: second_wait}"


# --- moving in the middle of a wait -----------------------------------------------------------------


def test_a_customer_mid_wait_moves_on_the_wake_keeps_the_due_time_and_gets_the_new_action_once():
    customer, _ = inside_v1(v2(SAME_STEPS))
    decision = customer.wakes(HOUR)
    assert actions(decision) == [("hello_v2", HOUR)]
    assert decision.commands[0].payload == {"product": "sku-lamp"}  # the v1 trigger carries over
    assert "journey j v2, step hello" in decision.commands[0].reason
    assert moves(decision) == [("migrate", 1, 2, "from v1 step first_wait to step first_wait")]
    assert where(customer) == (2, "second_wait", HOUR + DAY)
    assert customer.wakes(HOUR).commands == []
    assert actions(customer.wakes(HOUR + DAY)) == [("bye_v2", HOUR + DAY)]
    assert customer.state.journey_log["j"]["entries"] == 1  # a move is not an entry


def test_a_customer_moves_when_next_looked_at_before_the_wait_is_over():
    customer, _ = inside_v1(v2(SAME_STEPS))
    decision = customer.wakes(10 * MINUTE)  # any wake counts too: one that is early, or for another journey
    assert decision.commands == []
    assert moves(decision) == [("migrate", 1, 2, "from v1 step first_wait to step first_wait")]
    assert where(customer) == (2, "first_wait", HOUR)
    decision = customer.wakes(HOUR)
    assert actions(decision) == [("hello_v2", HOUR)]
    assert moves(decision) == []  # moved once, already


def test_the_event_that_moves_a_customer_is_handled_by_the_new_version():
    new = journey(
        2,
        "- {id: first_wait, wait: 1h}\n- action: {channel: email, action: hello_v2}",
        "from: 1\nsteps: {first_wait: first_wait}",
        head="trigger: {event: signup}\ngoal: {event: purchase}",
    )
    customer, _ = inside_v1(new)
    decision = customer.does("purchase", at=MINUTE, value=10.0)  # v1 has no goal; v2 has
    assert [(o.kind, o.version) for o in decision.outcomes] == [("migrate", 2), ("convert", 2), ("exit", 2)]
    assert customer.state.journeys == {}


def test_a_longer_wait_counts_from_when_the_customer_started_waiting_not_from_the_move():
    customer, _ = inside_v1(v2(SAME_STEPS, first="3h"), at=0.0)
    customer.does("page_view", at=30 * MINUTE)
    assert where(customer) == (2, "first_wait", 3 * HOUR)
    assert customer.wakes(HOUR).commands == []
    assert actions(customer.wakes(3 * HOUR)) == [("hello_v2", 3 * HOUR)]


def test_a_shorter_wait_that_is_already_over_fires_at_once_dated_at_its_new_due_time():
    customer, _ = inside_v1(v2(SAME_STEPS, first="20m"))
    decision = customer.does("page_view", at=30 * MINUTE)
    assert actions(decision) == [("hello_v2", 20 * MINUTE)]
    assert where(customer) == (2, "second_wait", 20 * MINUTE + DAY)


def test_the_second_wait_is_retimed_from_its_own_start():
    customer, catalogue = inside_v1()
    customer.wakes(HOUR)  # hello_v1 went out; now in v1's day-long wait, since 1h
    catalogue.add(v2(SAME_STEPS, second="2d"))
    customer.does("page_view", at=2 * HOUR)
    assert where(customer) == (2, "second_wait", HOUR + 2 * DAY)


def test_an_event_or_a_late_wake_moves_a_customer_the_same_way_with_the_same_action_ids():
    """Whatever first notices the new version, the customer ends up sending the same commands."""

    def run(story: str) -> list[tuple[str, str, float]]:
        customer, _ = inside_v1(v2(SAME_STEPS, first="20m"))
        sent = []
        if story == "event":
            sent += customer.does("page_view", at=10 * MINUTE).commands
        if story == "late":
            sent += customer.wakes(5 * HOUR).commands  # the timer came very late
        sent += customer.timer_until(3 * DAY)
        return [(c.action_id, c.action, c.issued_at - T0) for c in sent]

    on_time = run("event")
    assert [a[1:] for a in on_time] == [("hello_v2", 20 * MINUTE), ("bye_v2", 20 * MINUTE + DAY)]
    assert run("late") == on_time
    assert run("timer") == on_time


# --- mapped onto another kind of step ---------------------------------------------------------------


def test_mapped_onto_an_action_the_customer_runs_from_it_at_once_on_their_next_event():
    customer, _ = inside_v1(v2("from: 1\nsteps: {first_wait: hello}"))
    decision = customer.does("page_view", at=10 * MINUTE)
    assert actions(decision) == [("hello_v2", 10 * MINUTE)]
    assert where(customer) == (2, "second_wait", 10 * MINUTE + DAY)


def test_mapped_onto_an_action_without_events_it_runs_when_the_old_wait_falls_due_however_late_the_timer():
    customer, _ = inside_v1(v2("from: 1\nsteps: {first_wait: hello}"))
    decision = customer.wakes(5 * HOUR)
    assert actions(decision) == [("hello_v2", HOUR)]
    assert where(customer) == (2, "second_wait", HOUR + DAY)


def test_mapped_onto_an_exit_step_the_customer_leaves_with_its_reason():
    rule = "from: 1\nsteps: {first_wait: retired}"
    customer, _ = inside_v1(v2(rule, extra_steps="- {id: retired, exit: moved_out}"))
    decision = customer.does("page_view", at=MINUTE)
    assert [(o.kind, o.version, o.reason) for o in decision.outcomes][-1] == ("exit", 2, "moved_out")
    assert customer.state.journeys == {}


def test_mapped_onto_an_event_wait_the_awaited_event_takes_the_new_path():
    new = journey(
        2,
        """
        - id: click
          wait: {event: email_click, timeout: 2h, on_event: thanks, on_timeout: nudge}
        - {id: thanks, action: {channel: email, action: thanks}, next: done}
        - {id: nudge, action: {channel: email, action: nudge}}
        - {id: done, exit: completed}
        """,
        "from: 1\nsteps: {first_wait: click}",
    )
    clicked, _ = inside_v1(new)
    assert actions(clicked.does("email_click", at=30 * MINUTE)) == [("thanks", 30 * MINUTE)]
    silent, _ = inside_v1(new)
    silent.does("page_view", at=MINUTE)
    assert where(silent) == (2, "click", 2 * HOUR)  # the timeout counts from the start of the old wait
    assert actions(silent.wakes(2 * HOUR)) == [("nudge", 2 * HOUR)]


def test_a_split_arm_and_the_holdout_carry_over():
    old = journey(
        1,
        """
        - split: [{holdout: true, percent: 100}]
        - {id: wait_a_bit, wait: 1h}
        - action: {channel: email, action: hello_v1}
        """,
    )
    new = journey(
        2,
        "- {id: waiting, wait: 1h}\n- action: {channel: email, action: hello_v2}",
        "from: 1\nsteps: {wait_a_bit: waiting}",
    )
    catalogue = Catalogue.of([old])
    customer = Customer(Engine(catalogue))
    customer.does("signup")
    catalogue.add(new)
    decision = customer.wakes(HOUR)
    assert decision.commands == []
    assert [(h.command.action, h.reason) for h in decision.held] == [("hello_v2", "holdout")]


# --- unmapped steps ---------------------------------------------------------------------------------


def test_an_unmapped_step_stays_on_the_old_version_by_default():
    customer, _ = inside_v1(v2("from: 1\nsteps: {second_wait: second_wait}"))
    decision = customer.wakes(HOUR)
    assert actions(decision) == [("hello_v1", HOUR)]
    assert moves(decision) == []
    # ... and moves as soon as it reaches a step the rule maps
    assert where(customer) == (1, "second_wait", HOUR + DAY)
    decision = customer.does("page_view", at=2 * HOUR)
    assert moves(decision) == [("migrate", 1, 2, "from v1 step second_wait to step second_wait")]
    assert actions(customer.wakes(HOUR + DAY)) == [("bye_v2", HOUR + DAY)]


def test_an_unmapped_step_with_otherwise_exit_ends_the_journey_with_reason_migration():
    customer, _ = inside_v1(v2("from: 1\nsteps: {second_wait: second_wait}\notherwise: exit"))
    decision = customer.does("page_view", at=10 * MINUTE)
    assert decision.commands == []
    assert decision.outcomes == [Outcome("exit", "j", 1, "migration")]
    assert customer.state.journeys == {}
    assert customer.state.next_wake() is None
    assert customer.state.journey_log["j"]["last_exit"] == T0 + 10 * MINUTE
    assert customer.wakes(HOUR).commands == []


def test_otherwise_exit_alone_ends_everyone_in_flight_as_of_their_wait_if_it_fell_due_first():
    customer, _ = inside_v1(v2("from: 1\notherwise: exit"))
    decision = customer.wakes(3 * HOUR)
    assert decision.outcomes == [Outcome("exit", "j", 1, "migration")]
    assert customer.state.journey_log["j"]["last_exit"] == T0 + HOUR


def test_customers_on_versions_a_rule_does_not_name_stay_where_they_are():
    catalogue = Catalogue.of([V1])
    customer = Customer(Engine(catalogue))
    customer.does("signup", product="sku-lamp")
    catalogue.add(journey(2, "- wait: 1d"))
    catalogue.add(
        journey(
            3, "- {id: first_wait, wait: 1h}\n- action: {channel: email, action: hello_v3}", "from: 2\notherwise: exit"
        )
    )
    assert actions(customer.wakes(HOUR)) == [("hello_v1", HOUR)]


# --- chains and several rules -----------------------------------------------------------------------


def v3(migrate: str) -> Compiled:
    return journey(3, "- {id: wait_three, wait: 1h}\n- action: {channel: email, action: hello_v3}", migrate)


def test_the_newest_version_that_takes_a_customer_wins_v1_goes_straight_to_v3():
    customer, _ = inside_v1(v2(SAME_STEPS), v3("from: [1, 2]\nsteps: {first_wait: wait_three}"))
    decision = customer.wakes(HOUR)
    assert moves(decision) == [("migrate", 1, 3, "from v1 step first_wait to step wait_three")]
    assert actions(decision) == [("hello_v3", HOUR)]


def test_moves_chain_v1_to_v2_to_v3_when_v3_only_takes_v2():
    customer, _ = inside_v1(v2(SAME_STEPS), v3("from: 2\nsteps: {first_wait: wait_three}"))
    decision = customer.does("page_view", at=MINUTE)
    assert [(f, t) for _, f, t, _ in moves(decision)] == [(1, 2), (2, 3)]
    assert where(customer) == (3, "wait_three", HOUR)
    assert actions(customer.wakes(HOUR)) == [("hello_v3", HOUR)]


def test_a_newer_rule_that_leaves_a_step_alone_lets_an_older_rule_move_it():
    customer, _ = inside_v1(v2(SAME_STEPS), v3("from: 1\nsteps: {second_wait: wait_three}"))
    decision = customer.wakes(HOUR)  # v3 does not map first_wait; v2 does
    assert [(f, t) for _, f, t, _ in moves(decision)] == [(1, 2)]
    assert actions(decision) == [("hello_v2", HOUR)]


def test_a_rule_naming_a_version_wins_over_from_all():
    rules = """
    - from: all
      otherwise: exit
    - from: 1
      steps: {first_wait: wait_three}
    """
    customer, _ = inside_v1(v2(SAME_STEPS), v3(rules))
    assert actions(customer.wakes(HOUR)) == [("hello_v3", HOUR)]
    v2_customer = Customer(Engine(Catalogue.of([V1, v2(SAME_STEPS)])))
    v2_customer.does("signup")
    v2_customer.engine.catalogue.add(v3(rules))
    assert v2_customer.wakes(HOUR).outcomes == [Outcome("exit", "j", 2, "migration")]


def test_newcomers_enter_the_newest_version_and_are_not_moved():
    _, catalogue = inside_v1(v2(SAME_STEPS))
    newcomer = Customer(Engine(catalogue), customer_id="new")
    decision = newcomer.does("signup", at=MINUTE)
    assert [(o.kind, o.version) for o in decision.outcomes] == [("enter", 2)]
    assert moves(newcomer.wakes(MINUTE + HOUR)) == []


def test_a_customer_moves_even_when_the_old_version_is_gone():
    customer, catalogue = inside_v1(v2(SAME_STEPS))
    del catalogue.versions["j"][1]
    catalogue.add(catalogue.versions["j"][2])  # drop the caches, as a real change would
    decision = customer.wakes(HOUR)
    assert actions(decision) == [("hello_v2", HOUR)]
    assert "version_removed" not in [o.reason for o in decision.outcomes]


# --- waits armed before waits remembered their start ------------------------------------------------


def legacy(customer: Customer) -> None:
    """Forget when the wait began, as state written before migrations existed does not say."""
    for inst in customer.state.journeys.values():
        inst.pop("since", None)


def test_an_old_duration_wait_without_a_start_is_worked_out_from_its_length():
    customer, _ = inside_v1(v2(SAME_STEPS, first="3h"))
    legacy(customer)
    customer.does("page_view", at=MINUTE)
    assert where(customer) == (2, "first_wait", 3 * HOUR)


def test_an_old_until_wait_without_a_start_keeps_its_due_time():
    old = journey(1, "- {id: morning, wait: {until: '10:00'}}\n- action: {channel: email, action: hello_v1}")
    new = journey(
        2,
        "- {id: morning, wait: {until: '09:00'}}\n- action: {channel: email, action: hello_v2}",
        "from: 1\nsteps: {morning: morning}",
    )
    catalogue = Catalogue.of([old])
    customer = Customer(Engine(catalogue))  # T0 is 08:00 UTC
    customer.does("signup")
    due = where(customer)[2]
    catalogue.add(new)
    fresh = Customer(Engine(catalogue))
    fresh.state = CustomerState.from_bytes(customer.state.to_bytes())
    fresh.does("page_view", at=MINUTE)
    assert where(fresh) == (2, "morning", HOUR)  # since 08:00: the next 09:00
    legacy(customer)
    customer.does("page_view", at=MINUTE)
    assert where(customer) == (2, "morning", due)


# --- determinism and purity -------------------------------------------------------------------------


def test_the_same_story_with_a_migration_gives_the_same_decisions_and_never_mutates_its_input():
    def run() -> list[list[dict]]:
        customer, _ = inside_v1(v2(SAME_STEPS, first="20m"), v3("from: 2\nsteps: {second_wait: wait_three}"))
        out = []
        for kind, at in [("page_view", 10 * MINUTE), ("wake", HOUR), ("page_view", 2 * HOUR), ("wake", 2 * DAY)]:
            before = customer.state.to_bytes()
            previous = customer.state
            decision = customer.wakes(at) if kind == "wake" else customer.does(kind, at=at)
            assert previous.to_bytes() == before
            out.append([c.to_wire() for c in decision.commands] + [vars(o) for o in decision.outcomes])
        return out

    first = run()
    assert first == run()
    assert any(o.get("kind") == "migrate" for step in first for o in step)


def test_a_moved_customer_resumes_from_state_stored_as_bytes():
    customer, _ = inside_v1(v2(SAME_STEPS, first="3h"))
    customer.does("page_view", at=MINUTE)
    customer.state = CustomerState.from_bytes(customer.state.to_bytes())
    assert actions(customer.wakes(3 * HOUR)) == [("hello_v2", 3 * HOUR)]


def test_journeys_without_migration_rules_cost_nothing_and_change_nothing():
    engine = Engine(Catalogue.of([V1]))
    state = CustomerState(key="c-1")
    state.journeys["j"] = {"v": 1, "step": "first_wait", "wake": T0 + HOUR, "trigger": {}, "entered": T0}
    assert engine.migrate(state, T0, JourneyRun()) is False
    assert state.journeys["j"]["v"] == 1


# --- counted and explained --------------------------------------------------------------------------


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_move_counts_as_an_exit_of_the_old_version_with_reason_migrated_to_the_new_and_no_entry():
    labels = {"journey": "j_metrics", "version": "1", "reason": "migrated_to_v2"}
    before = sample("orchestrator_journey_exits_total", **labels)
    entries = sample("orchestrator_journey_entries_total", journey="j_metrics", version="2")
    metrics.count_outcomes([Outcome("migrate", "j_metrics", 2, "from v1 step a to step a", from_version=1)])
    metrics.count_outcomes([Outcome("exit", "j_metrics", 1, "migration")])
    assert sample("orchestrator_journey_exits_total", **labels) == before + 1
    assert sample("orchestrator_journey_exits_total", journey="j_metrics", version="1", reason="migration") >= 1
    assert sample("orchestrator_journey_entries_total", journey="j_metrics", version="2") == entries


def test_a_move_is_in_the_decision_record_and_explained_in_words():
    customer, _ = inside_v1(v2(SAME_STEPS))
    decision = customer.wakes(HOUR)
    wake = Event("timer", "__wake__", T0 + HOUR, "c-1", "timer", T0 + HOUR)
    record = decision_record(wake, decision, T0 + HOUR)
    assert {
        "kind": "migrate",
        "journey": "j",
        "version": 2,
        "reason": "from v1 step first_wait to step first_wait",
    } in record["journeys"]
    text = explain_lines([record])[0]
    assert "moved to journey j v2 by its migration rule (from v1 step first_wait to step first_wait)" in text
    exit_record = decision_record(wake, Decision(customer.state, outcomes=[Outcome("exit", "j", 1, "migration")]), T0)
    assert "left journey j v1: a newer version's migration rule ends it" in explain_lines([exit_record])[0]


# --- validation: the rule on its own ----------------------------------------------------------------

BASE = """
id: j
version: 3
trigger: {event: signup}
migrate:
  from: [1, 2]
  steps:
    first_wait: waiting
  otherwise: stay
steps:
  - id: waiting
    wait: 1h
  - action: {channel: email, action: hello}
"""


def test_a_valid_rule_compiles_in_either_form():
    single = compile_text(BASE, "j.yaml").definition.migrate
    assert [(m.from_, m.steps, m.otherwise) for m in single] == [([1, 2], {"first_wait": "waiting"}, "stay")]
    listed = BASE.replace("migrate:\n  from: [1, 2]", "migrate:\n  - from: [1, 2]").replace(
        "\n  steps:\n    first_wait: waiting\n  otherwise", "\n    steps: {first_wait: waiting}\n    otherwise"
    )
    assert "  - from" in listed and "    otherwise" in listed
    assert compile_text(listed, "j.yaml").definition.migrate == single
    assert compile_text(BASE.replace("[1, 2]", "2"), "j.yaml").definition.migrate[0].from_ == [2]
    assert compile_text(BASE.replace("[1, 2]", "all"), "j.yaml").definition.migrate[0].from_ == "all"


def test_a_journey_without_migrate_has_no_rules():
    assert (
        compile_text(BASE.split("migrate:")[0] + BASE.split("otherwise: stay\n")[1], "j.yaml").definition.migrate == []
    )


@pytest.mark.parametrize("versions", ["[3]", "[1, 4]", "3", "[2, 7]"])
def test_a_version_that_is_not_older_is_refused_on_its_line(versions):
    text = BASE.replace("from: [1, 2]", f"from: {versions}")
    error = only_error(text)
    assert error.line == line_with(text, "from:")
    assert "is not older than this one (3)" in error.message
    assert error.message.startswith("migrate.from")


def test_from_all_on_a_first_version_is_refused():
    text = BASE.replace("version: 3", "version: 1").replace("[1, 2]", "all")
    assert "version 1 has no older versions" in only_error(text).message


@pytest.mark.parametrize(
    "value",
    ["[true]", "['2']", "[1.5]", "[0]", "[-1]", "[]", "some", "{a: 1}", "[[1]]", "null", "'1'"],
)
def test_a_from_that_is_not_versions_or_all_is_refused_on_its_line(value):
    text = BASE.replace("from: [1, 2]", f"from: {value}")
    error = only_error(text)
    assert error.line == line_with(text, "from:"), error
    assert error.message.startswith("migrate.from"), error


def test_a_missing_from_is_named():
    text = BASE.replace("  from: [1, 2]\n", "")
    assert "migrate.from: Field required" in str(only_error(text))


def test_a_new_step_that_does_not_exist_is_refused_on_the_line_of_the_mapping():
    text = BASE.replace("first_wait: waiting", "first_wait: waitin")
    error = only_error(text)
    assert error.line == line_with(text, "first_wait: waitin")
    assert error.message == "migrate.steps.first_wait: goes to unknown step 'waitin', which version 3 lacks"


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ("first_wait: [waiting]", "first_wait"),
        ("first_wait: 7", "first_wait"),
        ("Bad-Id: waiting", "Bad-Id"),
        ("1: waiting", "1: waiting"),
    ],
)
def test_step_ids_in_the_map_must_be_step_ids(mapping, needle):
    text = BASE.replace("first_wait: waiting", mapping)
    error = only_error(text)
    assert error.line == line_with(text, needle)
    assert error.message.startswith("migrate.steps")


def test_an_unknown_otherwise_is_refused_on_its_line():
    text = BASE.replace("otherwise: stay", "otherwise: maybe")
    error = only_error(text)
    assert error.line == line_with(text, "otherwise:")
    assert "'stay' or 'exit'" in error.message


def test_a_typo_in_a_rule_is_an_unknown_field_on_its_line():
    text = BASE.replace("  otherwise: stay", "  otherwize: stay")
    error = only_error(text)
    assert error.line == line_with(text, "otherwize")
    assert "migrate.otherwize" in error.message


def test_a_rule_that_moves_nobody_is_refused():
    text = BASE.replace("  steps:\n    first_wait: waiting\n", "")
    assert "moves nobody" in only_error(text).message


def test_a_version_named_by_two_rules_is_refused_on_the_second():
    text = BASE.replace(
        "migrate:\n  from: [1, 2]\n  steps:\n    first_wait: waiting\n  otherwise: stay\n",
        "migrate:\n  - from: [1, 2]\n    otherwise: exit\n  - from: 2\n    steps: {first_wait: waiting}\n",
    )
    error = only_error(text)
    assert error.line == line_with(text, "from: 2")
    assert "version 2 is named by more than one migration rule" in error.message
    assert error.message.startswith("migrate.1.from")


def test_a_version_named_twice_in_one_rule_is_refused():
    error = only_error(BASE.replace("from: [1, 2]", "from: [1, 2, 1]"))
    assert error.message == "migrate.from.2: version 1 is named twice"


def test_two_from_all_rules_are_refused():
    text = BASE.replace(
        "migrate:\n  from: [1, 2]\n  steps:\n    first_wait: waiting\n  otherwise: stay\n",
        "migrate:\n  - {from: all, otherwise: exit}\n  - {from: all, steps: {first_wait: waiting}}\n",
    )
    assert "only one migration rule can say 'from: all'" in only_error(text).message


def test_a_rule_that_is_not_a_mapping_is_refused():
    text = BASE.replace(
        "migrate:\n  from: [1, 2]\n  steps:\n    first_wait: waiting\n  otherwise: stay\n", "migrate: everyone\n"
    )
    assert only_error(text).message.startswith("migrate")


def test_every_error_of_a_rule_is_reported_at_once():
    text = BASE.replace("from: [1, 2]", "from: [1, 3]").replace("first_wait: waiting", "first_wait: nowhere")
    assert len(errors_of(text)) == 2


def test_a_huge_from_list_still_compiles_quickly():
    versions = ", ".join(str(v) for v in range(1, 20_000))
    text = BASE.replace("version: 3", "version: 20000").replace("[1, 2]", f"[{versions}]")
    compiled = compile_text(text, "j.yaml")
    catalogue = Catalogue.of([compiled])
    assert catalogue.migration("j", 17, "first_wait") is not None


# --- validation: against the old versions beside it -------------------------------------------------


def folder(tmp_path: Path, *texts: str) -> Path:
    for i, text in enumerate(texts):
        (tmp_path / f"j{i}.yaml").write_text(dedent(text).lstrip())
    return tmp_path


OLD = """
id: j
version: 1
trigger: {event: signup}
steps:
  - id: first_wait
    wait: 1h
  - id: hello
    action: {channel: email, action: hello}
"""


def test_old_steps_are_checked_against_old_versions_in_the_same_folder(tmp_path):
    bad = BASE.replace("from: [1, 2]", "from: 1").replace("first_wait: waiting", "frist_wait: waiting")
    good, errors = load_dir(folder(tmp_path, OLD, bad))
    assert len(good) == 2
    [error] = errors
    assert error.file.endswith("j1.yaml")
    assert error.line == line_with(bad, "frist_wait")
    assert error.message == "migrate.steps.frist_wait: no step 'frist_wait' in version 1"


def test_an_old_step_that_is_not_a_wait_is_refused_no_customer_ever_rests_there(tmp_path):
    bad = BASE.replace("from: [1, 2]", "from: 1").replace("first_wait: waiting", "hello: waiting")
    [error] = load_dir(folder(tmp_path, OLD, bad))[1]
    assert "step 'hello' of version 1 is an action step" in error.message
    assert error.line == line_with(bad, "hello: waiting")


def test_old_steps_are_not_checked_when_a_named_version_is_not_known_and_that_is_noted(tmp_path):
    maybe = BASE.replace("first_wait: waiting", "only_in_v2: waiting")
    assert load_dir(folder(tmp_path, OLD, maybe))[1] == []  # v2 may be published, not in the folder
    new = compile_text(dedent(maybe).lstrip(), "j3.yaml")
    errors, notes = check_migrations([new], [compile_text(dedent(OLD).lstrip(), "j1.yaml"), new])
    assert errors == []
    assert [(n.line, n.message) for n in notes] == [
        (line_with(maybe, "from:"), "migrate.from: old steps are not checked: version 2 is not known here")
    ]


def test_validate_prints_that_note_and_still_exits_0(tmp_path):
    maybe = BASE.replace("first_wait: waiting", "only_in_v2: waiting")
    command = [sys.executable, "-m", "orchestrator", "journeys", "validate", str(folder(tmp_path, OLD, maybe))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    line = line_with(maybe, "from:")
    note = f"note: {tmp_path}/j1.yaml:{line}: migrate.from: old steps are not checked: version 2 is not known here"
    assert note in result.stderr.splitlines()


def test_from_all_is_checked_when_every_older_version_is_known(tmp_path):
    bad = BASE.replace("version: 3", "version: 2").replace("[1, 2]", "all").replace("first_wait: w", "gone: w")
    [error] = load_dir(folder(tmp_path, OLD, bad))[1]
    assert error.message == "migrate.steps.gone: no step 'gone' in version 1"


def test_from_all_with_older_versions_missing_is_noted_not_checked_even_for_a_huge_version():
    text = BASE.replace("version: 3", "version: 999999999").replace("[1, 2]", "all")
    text = text.replace("first_wait: waiting", "gone: waiting")
    new = compile_text(dedent(text).lstrip(), "j.yaml")
    errors, notes = check_migrations([new], [compile_text(dedent(OLD).lstrip(), "j1.yaml"), new])
    assert errors == []
    assert [n.message for n in notes] == [
        "migrate.from: old steps are not checked: versions 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 999999987 more"
        " are not known here"
    ]


def test_the_catalogue_logs_a_rule_naming_unknown_old_steps_once_and_ignores_it(caplog):
    old = compile_text(dedent(OLD).lstrip(), "published j:1")
    ghost = BASE.replace("from: [1, 2]", "from: 1").replace("first_wait: waiting", "ghost: waiting")
    new = compile_text(dedent(ghost).lstrip(), "published j:3")
    with caplog.at_level(logging.WARNING, logger="orchestrator.journeys.catalogue"):
        catalogue = Catalogue.of([old, new])
        catalogue.add(old)
        catalogue.add(new)
    line = line_with(ghost, "ghost: waiting")
    assert [r.getMessage() for r in caplog.records] == [
        "journey migration rule ignored in part: "
        f"published j:3:{line}: migrate.steps.ghost: no step 'ghost' in version 1"
    ]
    assert catalogue.migration("j", 1, "first_wait") is None  # nobody rests at ghost; first_wait stays


# --- the example ------------------------------------------------------------------------------------


def test_the_migration_example_validates_beside_the_shipped_version_and_moves_its_customers(tmp_path):
    shutil.copy(REPO / "journeys" / "cart_abandoned.yaml", tmp_path)
    shutil.copy(EXAMPLE / "cart_abandoned_v3.yaml", tmp_path)
    journeys, errors = load_dir(tmp_path)
    assert errors == []
    shipped, example = sorted(journeys, key=lambda j: j.version)
    catalogue = Catalogue.of([shipped])
    customer = Customer(Engine(catalogue), policy=Policy(rules=frozenset(), frequency_cap_per_day=10))
    customer.does("add_to_cart", product="sku-tent")
    catalogue.add(example)
    decision = customer.does("page_view", at=30 * MINUTE)
    assert [(o.from_version, o.version) for o in decision.outcomes] == [(2, 3)]
    sent = customer.timer_until(3 * DAY)
    assert [(c.action, c.issued_at - T0) for c in sent] == [("cart_reminder", 2 * HOUR), ("remarketing_ad", 14 * HOUR)]
    assert sent[1].payload["incentive"]["percent"] == 20
    assert sent[1].payload["product"] == "sku-tent"
