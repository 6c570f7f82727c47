"""Hostile journey files: input meant to crash, freeze or fool ``journeys validate`` and the
loader is refused with one line naming file and line, never a traceback, a hang or a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_unit_journey_files import errors_of, line_with, only_error
from test_unit_journey_validate import validate, write

from orchestrator.journeys.conditions import (
    MAX_EXPRESSION_CHARS,
    MAX_OPERATORS,
    Condition,
    ConditionError,
    Template,
    template_spans,
)
from orchestrator.journeys.loader import check_dir, compile_text

HDR = "id: t\nversion: 1\ntrigger: {event: signup}\n"


# --- characters YAML does not allow ----------------------------------------------------------------


@pytest.mark.parametrize("char", ["\x07", "\x00", "\x7f", "\x80", "\x9f", "\ufffe"])
def test_a_control_character_is_bad_yaml_on_its_line(char):
    error = only_error(f"{HDR}description: a{char}b\nsteps: [exit]\n")
    assert error.line == 4
    assert error.message == f"not valid YAML: unacceptable character #x{ord(char):04x}"


def test_validate_names_a_control_character_in_one_line_and_exits_1(tmp_path):
    write(tmp_path, "id: t\x07\n")
    result = validate(tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path / 'j.yaml'}:1: not valid YAML: unacceptable character #x0007" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr


# --- keys written twice ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (f"{HDR}steps: [wait: 1h]\nsteps: [{{exit: done}}]\n", 5, "steps"),
        (f"{HDR}steps:\n  - id: a\n    wait: 1h\n    id: b\n", 7, "id"),
        (f"{HDR}steps:\n  - action: {{channel: email, action: hi, payload: {{a: 1, a: 2}}}}\n", 5, "a"),
        ("id: t\nversion: 1\ntrigger:\n  event: signup\n  event: purchase\nsteps: [exit]\n", 5, "event"),
    ],
    ids=["top level", "in a step", "in a payload", "in the trigger"],
)
def test_a_key_written_twice_is_refused_on_its_second_line(text, line, key):
    error = only_error(text)
    assert (error.line, error.message) == (line, f"key '{key}' appears twice")


def test_every_key_written_twice_is_reported_with_the_file_s_other_errors():
    text = (
        "id: t\nversion: 1\ndescription: a\ndescription: b\ntrigger: {event: signup, when: 'state.nope > 1'}\n"
        "steps:\n  - id: a\n    wait: 1h\n    wait: 2h\n  - id: b\n    wait: 1y\n"
    )
    found = [(error.line, error.message.split(" ")[0]) for error in errors_of(text)]
    assert found == [(4, "key"), (5, "state"), (9, "key"), (11, "steps.1.wait.for:")]


def test_an_alias_is_reported_on_its_own_line_with_the_file_s_other_errors():
    text = "id: t\nversion: 1\ntrigger: &t {event: signup}\ngoal: *t\nsteps:\n  - wait: 1x\n"
    assert [(e.line, e.message[:7]) for e in errors_of(text)] == [(4, "aliases"), (6, "steps.0")]


def test_an_alias_to_an_anchor_never_written_is_one_error_on_its_line():
    text = "id: t\nversion: 1\ntrigger: {event: signup}\ngoal: *nowhere\nsteps:\n  - wait: 1h\n"
    assert [(e.line, e.message) for e in errors_of(text)] == [(4, "not valid YAML: found undefined alias 'nowhere'")]


# --- values nothing downstream can carry -----------------------------------------------------------

PAYLOAD = HDR + "steps:\n  - action:\n      channel: email\n      action: hi\n      payload:\n        "


def with_payload(entry: str) -> str:
    return f"{PAYLOAD}        {entry}\n"


SIGNUP = '{"event_id": "a", "type": "signup", "ts": 1790000000, "customer_id": "c"}\n'


def replay(folder: Path, history: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``orchestrator replay`` of ``history`` through the journeys in ``folder``."""
    events = folder / "history.jsonl"
    events.write_text(history)
    command = [sys.executable, "-m", "orchestrator", "replay", str(events), "--journeys", str(folder), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("value", "text"),
    [("2024-01-01", "2024-01-01"), ("2024-01-01 10:00:00", "2024-01-01 10:00:00"), ("10:30", "10:30")],
    ids=["a date", "a date and time", "a time of day (not base-60 630)"],
)
def test_unquoted_dates_and_times_stay_the_text_written(value, text):
    journey = compile_text(with_payload(f"at: {value}"), "j.yaml")
    assert journey.payloads["step1"]["at"].text == text


def test_unquoted_values_are_read_as_yaml_1_2_and_json_read_them_not_as_yaml_1_1():
    """YAML 1.1 reads NO as false, yes and on as true, 017 as the octal 15, and 1e3 as text."""
    entries = "{country: NO, opt_in: yes, on: 1, code: 017, octal: 0o17, hex: 0x1f, ratio: 1e3, big: 1_000, t: TRUE}"
    payload = compile_text(f"{PAYLOAD}{entries}\n", "j.yaml").payloads["step1"]
    values = {key: (value.text if hasattr(value, "text") else value) for key, value in payload.items()}
    assert values == {
        "country": "NO", "opt_in": "yes", "on": 1, "code": 17, "octal": 15, "hex": 31, "ratio": 1000.0,
        "big": "1_000", "t": True,
    }  # fmt: skip


def test_a_version_with_a_leading_zero_is_the_decimal_number_written():
    assert compile_text("id: t\nversion: 010\ntrigger: {event: signup}\nsteps: [exit]\n", "j.yaml").version == 10


@pytest.mark.parametrize(
    ("value", "kind"),
    [("!!binary aGVsbG8=", "binary"), ("!!timestamp 2024-01-01", "timestamp")],
)
def test_a_tagged_value_no_command_can_carry_is_refused_on_its_line(value, kind):
    text = with_payload(f"at: {value}")
    error = only_error(text)
    assert error.line == line_with(text, "at:")
    assert error.message.startswith(f"a {kind} value cannot go into a journey")
    assert error.message.endswith("quote it")


def test_a_tagged_value_yaml_cannot_read_is_refused_on_its_line():
    text = with_payload("at: !!timestamp 2024-13-45")
    error = only_error(text)
    assert (error.line, error.message) == (line_with(text, "at:"), "not valid YAML: month must be in 1..12")


def test_a_whole_number_beyond_64_bits_is_refused_on_its_line():
    text = with_payload("n: 99999999999999999999")
    error = only_error(text)
    assert error.line == line_with(text, "n: 9")
    assert "too large" in error.message


def test_a_number_of_thousands_of_digits_is_refused_on_its_line_named_by_its_first_digits():
    """Python refuses to read an integer of over 4,300 digits at all (a ValueError, not a
    number out of range), so this is the loader's own error, not a traceback."""
    text = with_payload("n: " + "9" * 5000)
    error = only_error(text)
    assert error.line == line_with(text, "n: 9")
    assert error.message == f"the number {'9' * 24}… is too large for a journey (beyond 2^63): quote it"


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_a_number_json_cannot_carry_is_refused_on_its_line(value):
    text = with_payload(f"n: {value}")
    error = only_error(text)
    assert (error.line, error.message) == (
        line_with(text, f"n: {value}"),
        f"{value} is not a number JSON can carry: quote it, or use a number",
    )


@pytest.mark.parametrize("entry", ['v: "a\\ud800b"', '"\\udfff": v'], ids=["in a value", "in a key"])
def test_text_with_a_lone_surrogate_is_refused_on_its_line(entry):
    """No channel can be sent it: msgpack and JSON both need text that is UTF-8."""
    text = with_payload(entry)
    error = only_error(text)
    assert error.line == line_with(text, "ud")
    assert error.message.startswith("text with a lone surrogate")


def test_two_keys_that_read_as_one_are_named_as_written():
    text = with_payload("n: {1: a, true: b}")
    error = only_error(text)
    assert error.message == "key 'true' is the same key as '1' once read: quote one of them"


@pytest.mark.parametrize("reason", ["goal", "loop", "merged", "over_limit", "exit_on", "migrated_to_v3"])
def test_an_exit_step_may_not_give_a_reason_the_engine_gives(reason):
    """``exit: goal`` would count as a goal exit in the metrics with no conversion behind it."""
    error = only_error(f"{HDR}steps:\n  - exit: {reason}\n")
    assert error.message == f"steps.0.exit: exit reason '{reason}' is one the engine gives: name the step's own reason"


@pytest.mark.parametrize("reason", ["''", "Done", "'no reason'"])
def test_an_exit_reason_is_a_name(reason):
    error = only_error(f"{HDR}steps:\n  - exit: {reason}\n")
    assert "is a name: a lower-case letter, then letters, digits or '_'" in error.message


def test_an_action_that_expires_at_once_is_refused():
    error = only_error(f"{HDR}steps:\n  - action: {{channel: email, action: hi, ttl: 0s}}\n")
    assert error.message == "steps.0.action: an action's ttl must be longer than zero (leave it out for none)"


def test_a_payload_with_an_unquoted_date_replays_to_json(tmp_path):
    write(tmp_path, with_payload("launch: 2024-01-01"))
    result = replay(tmp_path, SIGNUP, "--json")
    assert result.returncode == 0, result.stderr
    commands = [json.loads(line) for line in result.stdout.splitlines() if '"summary"' not in line]
    assert [c["payload"]["launch"] for c in commands] == ["2024-01-01"]


# --- until: a time of day, as text -----------------------------------------------------------------

UNTIL = HDR + "steps:\n  - wait:\n      until: {}\n"


@pytest.mark.parametrize("until", ["10", "10.5", "true"])
def test_an_until_that_is_not_text_is_refused_with_the_quoted_form_to_write(until):
    text = UNTIL.replace("{}", until)
    error = only_error(text)
    assert error.line == line_with(text, "until:")
    assert error.message.endswith('is not a time of day: write it in quotes, like "10:00"')


@pytest.mark.parametrize("until", ["10:00:00", '"10:00\\n"', "'10:00 '"])
def test_an_until_with_seconds_or_a_trailing_newline_is_not_hh_mm(until):
    error = only_error(UNTIL.replace("{}", until))
    assert "is not HH:MM" in error.message


def test_an_unquoted_until_with_seconds_is_quoted_as_written_not_as_base_60():
    assert "'10:00:00' is not HH:MM" in only_error(UNTIL.replace("{}", "10:00:00")).message


# --- absurd numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize("wait", ["1000000w", "99999999999999999999999w", "3654d", "1000000000000"])
def test_a_duration_longer_than_10_years_is_refused_on_its_line(wait):
    text = f"{HDR}steps:\n  - wait: {wait}\n  - exit\n"
    error = only_error(text)
    assert error.line == line_with(text, "wait:")
    assert error.message.endswith("is longer than 10 years")


@pytest.mark.parametrize(
    "where", ["  - action: {channel: email, action: hi, ttl: 9999w}\n", "  - wait: {event: buy, timeout: 9999w}\n"]
)
def test_ttls_and_timeouts_are_bounded_too(where):
    assert only_error(f"{HDR}steps:\n{where}").message.endswith("is longer than 10 years")


def test_a_wait_of_10_years_is_fine():
    journey = compile_text(f"{HDR}steps:\n  - wait: 3653d\n  - exit\n", "j.yaml")
    assert journey.steps["step1"].wait.for_ == 3653 * 86400


def test_replay_refuses_an_after_longer_than_10_years_in_one_line(tmp_path):
    write(tmp_path, f"{HDR}steps: [exit]\n")
    result = replay(tmp_path, SIGNUP, "--after", "1000000w")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["orchestrator: error: --after: '1000000w' is longer than 10 years"]


@pytest.mark.parametrize("version", ["true", "2.0", "'2'", "0", "1000000001", "-1"])
def test_a_version_is_a_whole_number_from_1_to_a_billion_and_nothing_like_it(version):
    text = f"id: t\nversion: {version}\ntrigger: {{event: signup}}\nsteps: [exit]\n"
    error = only_error(text)
    assert error.line == 2
    assert error.message.startswith("version:")


def test_a_migration_from_a_version_beyond_a_billion_is_refused():
    text = "id: t\nversion: 2\ntrigger: {event: signup}\nsteps: [exit]\nmigrate: {from: 10000000000, otherwise: exit}\n"
    assert "not '10000000000'" in only_error(text).message


# --- expressions that would crash CEL or run for ever ----------------------------------------------


def condition(when: str) -> str:
    return f'id: t\nversion: 1\ntrigger:\n  event: signup\n  when: "{when}"\nsteps: [exit]\n'


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("+".join(["1"] * 3_000) + " == 1", "expression too long (6004 characters, at most 4000)"),
        ("event.type == '" + "x" * 70_000 + "' &&", "expression too long (70019 characters, at most 4000)"),
        ("(" * 66_000 + "true" + ")" * 66_000, "expression too long (132004 characters, at most 4000)"),
        ("+".join(["1"] * 1000) + " == 1", "too deeply nested (1000 operators, at most 300)"),
        ("event" + ".a" * 400 + " == 1", "too deeply nested (401 operators, at most 300)"),
    ],
    ids=["3,000 terms", "a syntax error past column 65535", "66,000 parentheses", "1,000 terms", "a long chain"],
)
def test_an_expression_cel_would_crash_on_is_refused_on_its_line(when, message):
    error = only_error(condition(when))
    assert error.line == 5
    assert error.message.startswith(message)


def test_validate_refuses_a_60_kb_expression_with_one_line_instead_of_crashing(tmp_path):
    """In a subprocess: should the bound ever go, compiling this would kill the process."""
    write(tmp_path, condition("+".join(["1"] * 30_000) + " == 1"))
    result = validate(tmp_path)
    assert result.returncode == 1, result.stderr
    assert "j.yaml:5: expression too long (60004 characters, at most 4000)" in result.stderr


def test_an_expression_at_the_limits_compiles_and_evaluates():
    longest = Condition.compile(f"'{'x' * (MAX_EXPRESSION_CHARS - 9)}' != 'y'")
    deepest = Condition.compile("+".join(["1"] * MAX_OPERATORS) + " > 0")  # MAX_OPERATORS operators
    assert len(longest.expression) == MAX_EXPRESSION_CHARS
    assert longest.holds({}) and deepest.holds({})
    chain = Condition.compile("event" + ".a" * (MAX_OPERATORS - 2) + " == 1")  # reads_of walks it recursively
    event: object = 1
    for _ in range(MAX_OPERATORS - 2):
        event = {"a": event}
    assert chain.holds({"event": event})


class PanicException(BaseException):  # what pyo3 raises for a Rust panic: not an Exception
    pass


@dataclass
class Panicking:
    """A stand-in for a compiled CEL program whose evaluator panics (the Rust side is the boundary)."""

    def execute(self, variables: dict) -> None:
        raise PanicException("Formatting argument out of range")


def test_a_panic_while_evaluating_is_a_runtime_error_the_engine_counts_not_a_crash():
    broken = Condition("event.type == 'x'", Panicking(), frozenset({"event"}))
    with pytest.raises(RuntimeError, match="CEL failed: Formatting argument out of range"):
        broken.holds({"event": {"type": "x"}})


@pytest.mark.parametrize(
    "when",
    [
        "[0,1].map(x0, [0,1].map(x1, [0,1].map(x2, x2))) == []",
        "state.cart.exists(i, [1].all(j, [2].exists_one(k, k == j)))",
        "[1].filter(x, x > 0).size() > 0 && [1].all(a, [1].all(b, [1].all(c, true)))",
    ],
)
def test_comprehensions_nested_three_deep_are_refused_on_their_line(when):
    error = only_error(condition(when))
    assert error.line == 5
    assert error.message.startswith("comprehensions nested 3 deep (at most 2)")


@pytest.mark.parametrize(
    "when",
    [
        "[0,1].map(x0, [0,1].map(x1, x1)) != []",
        "[1].map(x, x).map(y, y).map(z, z).all(w, w > 0)",
        "state.cart.exists(i, '.map(.map(.map(' != '')",
    ],
    ids=["two deep", "one after another", "names inside a string"],
)
def test_comprehensions_two_deep_or_one_after_another_are_fine(when):
    assert errors_of(condition(when)) == []


# --- conditions that are not true or false ---------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "kind"),
    [("1", "int"), ("'str'", "string"), ("state", "map"), ("now", "double"), ("[true]", "list"), ("null", "null")],
)
def test_a_condition_that_plainly_gives_no_boolean_is_refused_on_its_line(when, kind):
    error = only_error(condition(when))
    assert error.line == 5
    assert error.message.startswith(f"a condition must be true or false, this gives {kind}")


def test_a_payload_template_may_give_any_plain_value():
    assert errors_of(with_payload("n: '{{ 1 }}'")) == []


def test_a_condition_that_gives_a_number_at_run_time_raises_so_the_engine_counts_it():
    with pytest.raises(TypeError, match="condition gave int, not bool"):
        Condition.compile("event.properties.age").holds({"event": {"properties": {"age": 30}}})


# --- templates: found in linear time ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expressions"),
    [
        ("{{" + " " * 100_000, []),
        ("{{" * 50_000, []),
        ("{{" + " " * 100_000 + "x\ny }}", []),
        ("}}" * 50_000, []),
        ("{{ x" + "}" * 100_000, ["x"]),
        ("{{ a\n" * 20_000 + "}}", ["a"]),
        ("{{ 1 }}" * 20_000, ["1"] * 20_000),
    ],
    ids=["spaces, no end", "only openings", "a far end across lines", "only ends", "}}}", "lines, one end", "many"],
)
def test_hostile_templates_of_100k_characters_are_read_as_the_regex_read_them(text, expressions):
    """The regex this replaced took minutes on the first; here each is one pass of str.find."""
    assert [expression for _, _, expression in template_spans(text)] == expressions
    if not expressions:
        assert Template.compile(text).render({}) == text


def test_a_template_too_long_to_be_an_expression_is_refused_not_compiled():
    with pytest.raises(ConditionError, match="expression too long"):
        Template.compile("{{" * 50_000 + "\n}}")


@pytest.mark.parametrize(
    ("text", "expressions", "whole"),
    [
        ("{{ 1 }}", ["1"], True),
        ("  {{1}}\n", ["1"], True),
        ("a {{ 1 }} b {{ 'x' }}", ["1", "'x'"], False),
        ("{{{ x }}}", ["{ x"], False),
        ("{{ '}}' }}", ["'"], False),
        ("{{ a\nb }} {{ 2 }}", ["2"], False),
        ("{{\n  1 \n}}", ["1"], True),
        ("{{ 1 }}}", ["1"], False),
        ("no template {{", [], False),
    ],
)
def test_templates_are_found_as_the_regex_found_them(text, expressions, whole):
    assert [expression for _, _, expression in template_spans(text)] == expressions
    if expressions and all(e in ("1", "'x'", "2") for e in expressions):
        assert Template.compile(text).whole is whole


def test_a_template_renders_its_values_in_place_and_a_whole_one_is_its_value():
    assert Template.compile("a {{ 1 + 1 }} b {{ 'x' }} c").render({}) == "a 2 b x c"
    assert Template.compile(" {{ [1, 2] }} ").render({}) == [1, 2]
    assert Template.compile("{{ 1 }}}").render({}) == "1}"


def test_an_empty_template_is_refused_like_any_expression_that_does_not_parse():
    assert "in expression ''" in only_error(with_payload("a: 'x {{ }} y'")).message


def test_text_holding_the_closing_braces_says_the_template_ended_early_and_how_to_write_them():
    message = only_error(with_payload("a: \"{{ '}}' }}\"")).message
    assert "a template ends at the first }}, so write }} inside one as '}' + '}'" in message
    assert Template.compile("{{ '}' + '}' }}").render({}) == "}}"


def test_a_template_that_fails_with_its_quotes_closed_gets_no_hint_about_braces():
    assert "template ends" not in only_error(with_payload("a: \"{{ 'it' + ) }}\"")).message


@pytest.mark.parametrize(
    ("value", "kind"), [("5", "a number"), ("{a: 1}", "a map"), ("true", "true/false"), ("null", "null")]
)
def test_an_event_that_is_neither_a_name_nor_a_list_says_what_it_is(value, kind):
    error = only_error(f"id: t\nversion: 1\ntrigger: {{event: {value}}}\nsteps: [exit]\n")
    assert (error.line, error.message) == (3, f"trigger.event: give an event name or a list of them, not {kind}")


def test_a_channel_that_is_neither_a_name_nor_a_list_says_what_it_is():
    error = only_error("id: t\nversion: 1\ntrigger: {event: signup, channel: 5}\nsteps: [exit]\n")
    assert (error.line, error.message) == (3, "trigger.channel: give a channel or a list of them, not a number")


# --- step ids --------------------------------------------------------------------------------------


def test_a_step_id_used_twice_names_both_lines_also_when_one_is_a_position_s_name():
    text = f"{HDR}steps:\n  - id: step2\n    wait: 1h\n  - wait: 2h\n"
    error = only_error(text)
    assert (error.line, error.message) == (
        line_with(text, "wait: 2h"),
        "steps.1: step 'step2' is defined twice (lines 5 and 7); step ids must be unique",
    )


def test_30000_steps_validate_in_one_pass_over_their_ids():
    """``ids.count`` for each id took 17 s here; the test's timeout catches a return to it."""
    journey = compile_text(HDR + "steps:\n" + "- exit\n" * 30_000, "j.yaml")  # 210 KB
    assert len(journey.steps) == 30_000


# --- which files a folder's journeys are -----------------------------------------------------------


def test_journey_files_are_found_whatever_the_case_of_their_extension(tmp_path):
    for name in ("a.YAML", "b.Yml", "c.yaml"):
        write(tmp_path, f"id: {name[0]}\nversion: 1\ntrigger: {{event: signup}}\nsteps: [exit]\n", name)
    checked = check_dir(tmp_path)
    assert sorted(j.id for j in checked.journeys) == ["a", "b", "c"]
    assert checked.errors == checked.warnings == []


def test_validate_refuses_a_fifo_or_a_folder_named_yaml_without_reading_it_instead_of_hanging(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "sub.yml").mkdir()
    write(tmp_path, f"{HDR}steps: [exit]\n")
    result = validate(tmp_path)  # reading the FIFO would block until the test's timeout
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert f"{tmp_path / 'pipe.yaml'}: cannot read it: not a regular file (a FIFO, a device), not read" in lines
    assert f"{tmp_path / 'sub.yml'}: cannot read it: a folder, not read" in lines


def test_validate_says_a_link_to_nothing_is_one(tmp_path):
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    result = validate(tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"{tmp_path / 'gone.yaml'}: cannot read it: a link to nothing, not read" in result.stderr.splitlines()
