"""``journeys validate`` tries each condition and template on sample customers: one that can
never be true or false, or fails with a type error for everyone, is refused on its line; one
that only fails for some data (a missing property, a division by zero) passes."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_unit_journey_validate import errors_in, line_with, only_error, validate, write

from orchestrator.journeys.conditions import Condition
from orchestrator.journeys.context import Context
from orchestrator.journeys.loader import compile_text
from orchestrator.journeys.probe import condition_problem, sample_views

FAILS = "fails for every sample customer:"
OVERLOAD = f"{FAILS} No such overload: the operation is not defined for the given operand types"


def journey(when: str = "true", *, where: str = "audience", payload: str = "") -> str:
    """A journey with ``when`` as its audience, or as the condition of a trigger, goal, exit,
    event wait or branch case; ``payload`` is one payload entry of its action."""
    conditions = {
        "audience": f'audience: "{when}"\ntrigger: {{event: search}}\n',
        "trigger": f'trigger: {{event: search, when: "{when}"}}\n',
        "goal": f'trigger: {{event: search}}\ngoal: {{event: purchase, when: "{when}"}}\n',
        "exit_on": f'trigger: {{event: search}}\nexit_on: [{{event: email_unsubscribe, when: "{when}"}}]\n',
    }
    head = "id: j\nversion: 1\n" + conditions.get(where, "trigger: {event: search}\n")
    wait = f'  - wait: {{event: purchase, when: "{when}", timeout: 1h}}\n' if where == "wait" else "  - wait: 1h\n"
    branch = f'  - branch: [{{when: "{when}", next: done}}]\n' if where == "branch" else ""
    action = f"  - action: {{channel: email, action: hi, payload: {{{payload}}}}}\n"
    return f"{head}steps:\n{wait}{branch}{action}  - id: done\n    exit: completed\n"


@pytest.mark.parametrize("where", ["audience", "trigger", "goal", "exit_on", "wait", "branch"])
@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("state.events", "a condition must be true or false, this gives int for a sample customer"),
        ("state.consent", "a condition must be true or false, this gives map for a sample customer"),
        ("state.events + 'a' == 1", OVERLOAD),
        ("event.type.matches('[')", f"{FAILS} Function 'matches' error: '[' not a valid regex"),
        ("state.first_seen < now - 86400", f"{FAILS} Unsupported operation: float - int"),
        ("size(state.events) > 0", f"{FAILS} no function 'size' takes arguments of these types"),
        ("event.properties.price > 10 || state.events + 'a' == 1", OVERLOAD),
    ],
)
def test_a_condition_that_cannot_work_for_anyone_is_refused_on_its_line(tmp_path, where, when, message):
    text = journey(when, where=where)

    error = only_error(tmp_path, text)

    assert error.line == line_with(text, when)
    assert error.message == f"{message} in expression {when!r}"


@pytest.mark.parametrize(
    "when",
    [
        "event.properties.price > 10",  # a property: free-form, never known before it comes
        "int(state.customer_id) > 5",  # some shops' ids are numbers
        "state.consent.email",  # no such key for a new customer, true for the seasoned one
        "state.purchases / (state.events - state.events) > 1",  # a division by zero is the data's
        "state.cart.exists(p, state.cart[p].price > 10.0) && state.revenue > 100",
        "state.first_seen < now - 86400.0 && state.stage != 'lapsed' && '3003' in state.purchased",
        "type(now) == double && type(state.events) == int && type(state.cart) == map",
        "state.channel_counts.web > 1 && state.identifiers.email.endsWith('.com')",
        "false",
    ],
)
def test_a_condition_that_works_for_some_customers_passes(tmp_path, when):
    for where in ("audience", "goal", "wait", "branch"):
        assert errors_in(tmp_path, journey(when, where=where)) == [], where


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("n: '{{ state.events + 1.5 }}'", OVERLOAD),
        (
            "at: '{{ timestamp(\"2024-01-01T00:00:00Z\") }}'",
            "fails for every sample customer: '{{ timestamp(\"2024-01-01T00:00:00Z\") }}' gives a datetime,"
            " which a command cannot carry",
        ),
    ],
)
def test_a_template_that_fails_for_everyone_is_refused_on_its_line(tmp_path, entry, message):
    text = journey(payload=entry)

    error = only_error(tmp_path, text)

    assert error.line == line_with(text, "payload")
    assert error.message.startswith(message)


@pytest.mark.parametrize(
    "entry", ["p: '{{ trigger.properties.product }}'", "c: '{{ state.cart }}'", "n: 'hi {{ now }}'"]
)
def test_a_template_that_works_for_some_customers_passes(tmp_path, entry):
    assert errors_in(tmp_path, journey(payload=entry)) == []


def test_a_file_refused_elsewhere_still_has_its_conditions_tried(tmp_path):
    text = journey("state.events").replace("version: 1", "version: one")

    messages = [error.message for error in errors_in(tmp_path, text)]

    assert len(messages) == 2
    assert messages[1].startswith("a condition must be true or false, this gives int for a sample customer")


def test_validate_says_it_on_the_command_line_and_exits_1(tmp_path):
    text = journey("state.events + 'a' == 1")
    path = write(tmp_path, text)

    result = validate(tmp_path)

    assert result.returncode == 1
    expected = f"{path}:{line_with(text, 'audience')}: {OVERLOAD} in expression \"state.events + 'a' == 1\""
    assert expected in result.stderr.splitlines()


def test_a_version_already_published_still_loads_on_a_worker():
    """Only validate and publish try conditions: a worker keeps running what is published."""
    assert compile_text(journey("state.events + 'a' == 1"), "j.yaml").id == "j"


def test_the_samples_are_the_engines_own_views_of_customers_new_and_seasoned():
    new, seasoned = sample_views("search", "search")

    assert all(isinstance(view, Context) for view in (new, seasoned))
    assert Condition.compile("state.events == 2 && state.purchases == 0").value(new) is True
    grown = "state.purchases == 1 && state.cart_size == 1 && state.consent.email && int(state.customer_id) > 0"
    assert Condition.compile(grown).value(seasoned) is True
    assert Condition.compile("event.type == 'search' && event.properties == {}").value(seasoned) is True


def test_nested_comprehensions_are_not_tried():
    """Over a long literal list they could take seconds; at run time they are bounded anyway."""
    nested = "[1, 2].exists(x, [3, 4].all(y, x + y + 'a' == 1))"

    assert condition_problem(Condition.compile(nested), "search", "search") is None


def test_the_shipped_journeys_pass(tmp_path: Path) -> None:
    result = validate(Path(__file__).parents[2] / "journeys")

    assert result.returncode == 0, result.stderr
