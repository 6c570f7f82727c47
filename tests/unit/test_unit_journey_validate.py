"""``journeys validate``'s thoroughness: the shape of the steps, every expression error of a
file at once, short quotes of long expressions, and warnings for event types nobody knows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.journeys.conditions import ConditionError
from orchestrator.journeys.loader import InvalidJourney, JourneyError, check_dir, compile_text, load_dir

HEAD = "id: j\nversion: 1\ntrigger: {event: signup}\n"


def write(folder: Path, text: str, name: str = "j.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def line_with(text: str, needle: str) -> int:
    """The 1-based number of the only line of ``text`` containing ``needle``."""
    found = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(found) == 1, f"{needle!r} on lines {found}"
    return found[0]


def errors_in(folder: Path, text: str) -> list[JourneyError]:
    """The errors of a folder holding only ``text``, checked as ``validate`` checks it."""
    write(folder, text)
    checked = check_dir(folder)
    assert checked.journeys == [] or checked.errors == []
    return checked.errors


def only_error(folder: Path, text: str) -> JourneyError:
    errors = errors_in(folder, text)
    assert len(errors) == 1, errors
    return errors[0]


def validate(folder: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "orchestrator", "journeys", "validate", str(folder)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


# --- the shape of the steps ------------------------------------------------------------------------

# (the steps, a text on the line the error names, the error's message or its start)
SHAPE_ERRORS = {
    "a step that goes back to itself": (
        "  - wait: 1h\n  - id: spam\n    action: {channel: email, action: spam}\n    next: spam\n",
        "id: spam",
        "a loop with no wait in it (spam -> spam): one event would go round it until the engine ends the journey",
    ),
    "a loop through several steps, at the case that closes it": (
        "  - id: one\n    branch: [{when: 'true', next: two}]\n"
        "  - id: two\n    action: {channel: email, action: hi}\n"
        "  - id: three\n    branch:\n      - when: state.events > 0\n        next: one\n"
        "      - {else: true, next: out}\n"
        "  - id: out\n    exit: done\n",
        "when: state.events > 0",
        "a loop with no wait in it (one -> two -> three -> one)",
    ),
    "a loop through a split arm, at that arm": (
        "  - id: s\n    split:\n      - {variant: a, percent: 50, next: s}\n      - {variant: b, percent: 50}\n"
        "  - wait: 1d\n",
        "next: s}",
        "a loop with no wait in it (s -> s)",
    ),
    "a step no path reaches": (
        "  - wait: 1h\n  - exit\n  - id: forgotten\n    action: {channel: email, action: hi}\n",
        "id: forgotten",
        "step 'forgotten' is never reached: no path leads to it from the first step 'step1'",
    ),
    "the step below a wait whose outcomes both go elsewhere": (
        "  - wait: {event: purchase, timeout: 1d, on_event: bought, on_timeout: bought}\n"
        "  - id: skipped\n    action: {channel: email, action: hi}\n"
        "  - id: bought\n    exit: done\n",
        "id: skipped",
        "step 'skipped' is never reached",
    ),
    "a branch case after else": (
        "  - id: b\n    branch:\n      - {else: true, next: done}\n      - {when: state.events > 3, next: done}\n"
        "  - id: done\n    exit: done\n",
        "when: state.events > 3",
        "branch 'b': a case after 'else' is never tried",
    ),
    "a branch case that repeats an earlier condition": (
        "  - id: b\n    branch:\n      - {when: state.events > 3, next: a}\n      - {when: state.events > 3, next: c}\n"
        "  - id: a\n    exit: a\n  - id: c\n    exit: c\n",
        "next: c}",
        "branch 'b': this case repeats the condition of case 1, so it is never taken",
    ),
    "next on a branch with else": (
        "  - id: b\n    branch: [{else: true, next: e}]\n    next: e\n  - id: e\n    exit: done\n",
        "    next: e",
        "step 'b': 'next: e' is never followed: every way out of it names its own step",
    ),
    "two split arms with one name, at the second": (
        "  - id: s\n    split:\n      - {variant: offer, percent: 40}\n      - {variant: offer, percent: 40.0}\n"
        "      - {holdout: true, percent: 20}\n  - wait: 1d\n",
        "percent: 40.0",
        "split 's': arm 2 is named 'offer' like arm 1: the two cannot be told apart",
    ),
    "a variant called holdout beside the holdout": (
        "  - split:\n      - {holdout: true, percent: 50}\n      - {variant: holdout, percent: 50}\n",
        "variant: holdout",
        "steps.0.split.1: a variant needs a name other than 'holdout' ('holdout' is the holdout's)",
    ),
    "a second split": (
        "  - id: s1\n    split: [{variant: a, percent: 50}, {holdout: true, percent: 50}]\n  - wait: 1d\n"
        "  - id: s2\n    split: [{variant: x, percent: 50}, {variant: y, percent: 50}]\n",
        "variant: x",
        "split 's2': a journey has one split, and 's1' is it",
    ),
}

SHAPES_THAT_ARE_FINE = {
    "a loop through a wait": "  - id: tick\n    wait: 1h\n  - action: {channel: email, action: tick}\n    next: tick\n",
    "a branch without else, which also goes on to the step below": (
        "  - branch: [{when: state.events > 3, next: done}]\n"
        "  - action: {channel: email, action: hi}\n"
        "  - id: done\n    exit: done\n"
    ),
}


@pytest.mark.parametrize(("steps", "needle", "message"), SHAPE_ERRORS.values(), ids=SHAPE_ERRORS.keys())
def test_a_mistake_in_the_shape_of_the_steps_is_one_error_on_its_line(tmp_path, steps, needle, message):
    text = HEAD + "steps:\n" + steps
    error = only_error(tmp_path, text)
    assert (error.line, error.message[: len(message)]) == (line_with(text, needle), message)


@pytest.mark.parametrize("steps", SHAPES_THAT_ARE_FINE.values(), ids=SHAPES_THAT_ARE_FINE.keys())
def test_shapes_the_engine_runs_as_written_are_fine(tmp_path, steps):
    assert errors_in(tmp_path, HEAD + "steps:\n" + steps) == []


def test_a_step_only_a_migration_rule_moves_customers_onto_is_reached(tmp_path):
    text = (
        "id: j\nversion: 2\ntrigger: {event: signup}\n"
        "migrate: {from: 1, steps: {old_wait: late_wait}}\n"
        "steps:\n  - wait: 1h\n  - exit\n  - id: late_wait\n    wait: 2h\n"
    )
    assert errors_in(tmp_path, text) == []


def test_next_on_an_exit_and_outcomes_on_a_timed_wait_are_never_followed_each_on_its_line(tmp_path):
    text = HEAD + "steps:\n  - id: w\n    wait: {for: 1h, on_timeout: out}\n  - id: out\n    exit: done\n    next: w\n"
    errors = errors_in(tmp_path, text)
    assert [(e.line, e.message) for e in errors] == [
        (
            line_with(text, "on_timeout"),
            "step 'w': 'on_timeout' is never followed: only a wait for an event has outcomes",
        ),
        (line_with(text, "next: w"), "step 'out': 'next: w' is never followed: an exit ends the journey"),
    ]


def test_a_published_journey_with_a_loop_still_compiles_for_the_workers_that_run_it():
    """Only folders are checked for shape: a worker must keep running what is already published."""
    assert compile_text(HEAD + "steps:\n  - id: a\n    branch: [{else: true, next: a}]\n", "j.yaml").first == "a"


def test_a_journey_with_a_shape_error_is_not_among_the_good_ones(tmp_path):
    write(tmp_path, HEAD + "steps:\n  - id: a\n    branch: [{else: true, next: a}]\n")
    good, errors = load_dir(tmp_path)
    assert good == []
    assert len(errors) == 1


# --- every expression error of a file at once ------------------------------------------------------


# (the file, and for each error in order: a text on its line, a text in its message)
EVERY_ERROR_AT_ONCE = {
    "a schema error beside a bad condition and a bad template": (
        "id: j\nversion: 0\ntrigger:\n  event: signup\n  when: state.purchses > 0\n"
        "steps:\n  - wait: 1h\n  - action: {channel: email, action: hi, payload: {x: '{{ state.( }}'}}\n",
        [("version: 0", "version: "), ("when:", "state has no field 'purchses'"), ("payload:", "Syntax error")],
    ),
    "the conditions of a step the schema refuses": (
        HEAD + "steps:\n  - id: b\n    colour: red\n    branch:\n      - when: evnt.type == 'x'\n        next: b\n"
        "      - else: true\n        next: b\n",
        [("colour: red", "colour: Extra inputs"), ("evnt.type", "unknown name 'evnt'")],
    ),
    "each bad template of a payload": (
        HEAD + "steps:\n  - action:\n      channel: email\n      action: hi\n      payload:\n"
        "        good: '{{ state.events }}'\n        one: '{{ state.( }}'\n        nested: {two: ['{{ nope }}']}\n",
        [("one:", "Syntax error"), ("nested:", "unknown name 'nope'")],
    ),
}


@pytest.mark.parametrize(("text", "expected"), EVERY_ERROR_AT_ONCE.values(), ids=EVERY_ERROR_AT_ONCE.keys())
def test_every_error_of_a_file_is_reported_each_on_its_own_line(tmp_path, text, expected):
    errors = errors_in(tmp_path, text)
    assert [e.line for e in errors] == [line_with(text, needle) for needle, _ in expected]
    for error, (_, fragment) in zip(errors, expected, strict=True):
        assert fragment in error.message
        assert str(error).startswith(f"{tmp_path / 'j.yaml'}:{error.line}: ")


# --- a field-level error hides nothing else ------------------------------------------------------

SEVERAL_INDEPENDENT_ERRORS = (
    "id: j\nversion: 2\ntrigger: {event: add_to_kart}\n"
    "steps:\n"
    "  - id: pause\n    wait: 5 minutes\n"
    "  - id: hello\n    action: {channel: email, action: hi}\n    next: x\n"
    "  - id: opened\n    wait: {event: email_opne, timeout: 1d, on_event: nowhere}\n"
    "  - id: pick\n    branch:\n      - else: true\n        next: hello\n      - when: 'true'\n        next: hello\n"
    "  - id: hello\n    exit: completed\n"
    "migrate:\n  from: 1\n  steps: {waiting: missing}\n"
)


def test_a_bad_duration_hides_none_of_the_other_errors_and_warnings_of_the_file(tmp_path):
    text = SEVERAL_INDEPENDENT_ERRORS
    write(tmp_path, text)
    checked = check_dir(tmp_path)
    assert checked.journeys == []
    found = [(e.line, e.message) for e in checked.errors]
    assert found == [
        (line_with(text, "5 minutes"), found[0][1]),
        (line_with(text, "next: x"), "steps.1.next: step 'hello' goes to unknown step 'x'"),
        (line_with(text, "on_event: nowhere"), "steps.2.wait.on_event: step 'opened' goes to unknown step 'nowhere'"),
        (line_with(text, "when: 'true'"), "branch 'pick': a case after 'else' is never tried"),
        (
            line_with(text, "exit: completed") - 1,
            f"steps.4: step 'hello' is defined twice (lines {line_with(text, 'action: hi') - 1} and "
            f"{line_with(text, 'exit: completed') - 1}); step ids must be unique",
        ),
        (line_with(text, "missing"), "migrate.steps.waiting: goes to unknown step 'missing', which version 2 lacks"),
    ]
    assert found[0][1].startswith("steps.0.wait.for: ") and "5 minutes" in found[0][1]
    assert [(w.line, w.message.split(":")[0]) for w in checked.warnings] == [
        (line_with(text, "add_to_kart"), "trigger.event"),
        (line_with(text, "email_opne"), "steps.2.wait.event"),
    ]


def test_a_migration_rule_onto_a_step_that_does_not_exist_is_an_error_when_the_steps_are_fine(tmp_path):
    """Every step passes, so the paths through them are followed, from the rule's new steps too:
    one that names no step is the rule's error, not a crash of the path check."""
    text = "id: j\nversion: 2\ntrigger: {event: signup}\nmigrate: {from: 1, steps: {w1: nowhere}}\n"
    text += "steps:\n  - id: w2\n    wait: 2h\n"
    errors = errors_in(tmp_path, text)
    assert [(e.line, e.message) for e in errors] == [
        (line_with(text, "nowhere"), "migrate.steps.w1: goes to unknown step 'nowhere', which version 2 lacks")
    ]


def test_every_unknown_step_a_file_names_is_an_error_not_only_the_first(tmp_path):
    text = (
        HEAD
        + "steps:\n  - id: a\n    wait: 1h\n    next: nowhere\n  - id: b\n    split:\n"
        + ("      - {variant: x, percent: 50, next: gone}\n      - {holdout: true, percent: 50}\n")
    )
    errors = errors_in(tmp_path, text)
    assert [(e.line, e.message) for e in errors] == [
        (line_with(text, "next: nowhere"), "steps.0.next: step 'a' goes to unknown step 'nowhere'"),
        (line_with(text, "next: gone"), "steps.1.split.0.next: step 'b' goes to unknown step 'gone'"),
    ]


def test_a_schema_error_outside_the_steps_still_lets_the_shape_of_the_steps_be_checked(tmp_path):
    text = HEAD.replace("version: 1", "version: one") + (
        "steps:\n  - wait: 1h\n  - id: spam\n    action: {channel: email, action: spam}\n    next: spam\n"
    )
    errors = errors_in(tmp_path, text)
    assert [e.line for e in errors] == [line_with(text, "version: one"), line_with(text, "id: spam")]
    assert errors[1].message.startswith("a loop with no wait in it (spam -> spam)")


def test_validate_prints_every_error_of_a_file_with_a_bad_duration_in_one_run(tmp_path):
    write(tmp_path, SEVERAL_INDEPENDENT_ERRORS)
    result = validate(tmp_path)
    assert result.returncode == 1
    assert "goes to unknown step 'x'" in result.stderr
    assert "warning: trigger.event: event type 'add_to_kart'" in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"6 error(s) in {tmp_path}")


# --- long expressions in messages ------------------------------------------------------------------


def test_a_long_expression_is_quoted_cut_to_80_characters_with_an_ellipsis(tmp_path):
    expression = "state.purchses > 0 && " + " && ".join(f"state.events > {n}" for n in range(40))
    error = only_error(
        tmp_path, HEAD.replace("{event: signup}", f'{{event: signup, when: "{expression}"}}') + "steps: [exit]\n"
    )
    quoted = error.message.split(" in expression ")[1]
    assert quoted == repr(expression[:79] + "…")
    assert len(error.message) < 400


def test_a_short_expression_is_quoted_whole():
    error = ConditionError("state.x", "bad")
    assert str(error) == "bad in expression 'state.x'"
    assert error.expression == "state.x"


def test_the_error_keeps_the_whole_expression_and_cuts_a_long_detail():
    long = "x" * 500
    error = ConditionError(long, "token error at: " + long)
    assert error.expression == long
    assert len(str(error)) < 240 + 100


# --- event types nobody knows ----------------------------------------------------------------------


def test_an_unknown_trigger_event_type_is_a_warning_on_its_line_not_an_error(tmp_path):
    text = "id: j\nversion: 1\ntrigger:\n  event: [signup, add_to_kart]\nsteps:\n  - wait: 1h\n"
    write(tmp_path, text)
    checked = check_dir(tmp_path)
    assert [j.id for j in checked.journeys] == ["j"]
    assert checked.errors == []
    [warning] = checked.warnings
    assert warning.warning
    assert warning.line == line_with(text, "add_to_kart")
    assert str(warning) == (
        f"{tmp_path / 'j.yaml'}:4: warning: trigger.event: event type 'add_to_kart' is not one the product knows"
        " (did you mean 'add_to_cart'?)"
    )
    assert load_dir(tmp_path) == (checked.journeys, [])


def test_unknown_event_types_of_goals_exits_and_waits_are_warned_about_too(tmp_path):
    text = (
        "id: j\nversion: 1\ntrigger: {event: preferences}\ngoal: {event: bought_it}\nexit_on:\n  - event: zzz\n"
        "steps:\n  - wait: {event: email_opne, timeout: 1d}\n"
    )
    write(tmp_path, text)
    checked = check_dir(tmp_path)
    assert checked.errors == []
    assert [(w.line, w.message.split(":")[0]) for w in checked.warnings] == [
        (line_with(text, "bought_it"), "goal.event"),
        (line_with(text, "zzz"), "exit_on.0.event"),
        (line_with(text, "email_opne"), "steps.0.wait.event"),
    ]


@pytest.mark.parametrize("folder", ["journeys", "tests/unit/journeys_migration_example"])
def test_the_shipped_journeys_have_neither_errors_nor_warnings(folder):
    checked = check_dir(Path(__file__).resolve().parents[2] / folder)
    assert checked.journeys
    assert (checked.errors, checked.warnings) == ([], [])


# --- the command ---------------------------------------------------------------------------------


def test_validate_prints_warnings_on_stderr_and_still_exits_0(tmp_path):
    write(tmp_path, HEAD.replace("signup", "brand_new_type") + "steps:\n  - wait: 1h\n")
    result = validate(tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{tmp_path / 'j.yaml'}:3: warning: trigger.event: event type 'brand_new_type'" in result.stderr
    assert "ok  j v1" in result.stdout


def test_validate_prints_every_error_and_warning_in_file_order_and_exits_1(tmp_path):
    write(tmp_path, HEAD.replace("signup", "nu_type") + "steps:\n  - exit\n  - wait: 1h\n", "a.yaml")
    write(tmp_path, HEAD.replace("id: j", "id: k") + "steps:\n  - wait: 1h\n", "b.yaml")
    result = validate(tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'a.yaml'}:3: warning: ")
    assert lines[1].startswith(f"{tmp_path / 'a.yaml'}:6: step 'step2' is never reached")
    assert lines[2].endswith(f"1 error(s) in {tmp_path}")


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("trigger: {event: signup, channel: Web}", "trigger.channel.0: String should match pattern"),
        ("trigger: {event: signup, channel: []}", "trigger.channel: Value should have at least 1 item"),
        ("trigger: {event: signup}\ngoal: {event: purchase, channel: [web, 'Store ']}", "goal.channel.1: String"),
    ],
    ids=["upper case", "an empty list (it matched every channel)", "a space"],
)
def test_a_channel_to_match_is_spelt_as_events_spell_channels(tmp_path, where, message):
    text = f"id: j\nversion: 1\n{where}\nsteps: [exit]\n"
    error = only_error(tmp_path, text)
    assert error.message.startswith(message)
    assert error.line == line_with(text, "channel")


def test_a_wait_for_an_empty_list_of_events_is_refused():
    with pytest.raises(InvalidJourney) as caught:
        compile_text(HEAD + "steps:\n  - wait: {event: [], timeout: 1h}\n", "j.yaml")
    assert caught.value.errors[0].message.startswith("steps.0.wait.event: Value should have at least 1 item")


@pytest.mark.parametrize("name", ["holdout", "", "  "])
def test_a_variant_may_not_pass_for_the_holdout_or_go_unnamed(tmp_path, name):
    text = HEAD + f"steps:\n  - split: [{{variant: '{name}', percent: 50}}, {{variant: b, percent: 50}}]\n"
    error = only_error(tmp_path, text)
    assert error.message == f"steps.0.split.0: a variant needs a name other than {name!r} ('holdout' is the holdout's)"
