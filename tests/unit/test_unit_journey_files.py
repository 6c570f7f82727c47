"""Journey files: durations, validation errors that name file and line, and hostile definitions."""

from __future__ import annotations

from pathlib import Path

import pytest
from timing import within

from orchestrator.core.decide import decide
from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.conditions import Condition, ConditionError
from orchestrator.journeys.durations import parse_duration
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import Compiled, InvalidJourney, JourneyError, compile_text, load_dir

SHIPPED = Path(__file__).resolve().parents[2] / "journeys"
T0 = 1_800_000_000.0

MINIMAL = """\
id: j
version: 1
trigger:
  event: signup
steps:
  - id: a
    wait: 1h
  - id: b
    action:
      channel: email
      action: hello
"""


def errors_of(text: str) -> list[JourneyError]:
    """The errors that refuse ``text``; empty when it compiles."""
    try:
        compile_text(text, "j.yaml")
    except InvalidJourney as exc:
        assert exc.errors, "InvalidJourney without errors"
        return exc.errors
    return []


def only_error(text: str) -> JourneyError:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    assert errors[0].file == "j.yaml"
    return errors[0]


def line_with(text: str, needle: str) -> int:
    """The 1-based number of the only line of ``text`` containing ``needle``."""
    found = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(found) == 1, f"{needle!r} on lines {found}"
    return found[0]


# --- the shipped files ----------------------------------------------------------------------------


def test_every_shipped_journey_loads_without_errors():
    good, errors = load_dir(SHIPPED)
    assert errors == []
    assert sorted(j.id for j in good) == [
        "cart_abandoned",
        "post_purchase",
        "remarketing_after_browse",
        "repeat_thank_you",
        "welcome",
        "win_back",
    ]
    assert {j.id: j.version for j in good if j.version != 1} == {
        "cart_abandoned": 2,
        "remarketing_after_browse": 4,
        "welcome": 2,
        "win_back": 2,
    }


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda p: p.stem)
def test_each_shipped_journey_file_is_named_after_its_id_and_compiles_every_expression(path):
    journey = compile_text(path.read_text(encoding="utf-8"), path.name)
    assert journey.id == path.stem
    for expression in journey.conditions:
        assert isinstance(journey.conditions[expression], Condition)
    assert set(journey.payloads) == {s.id for s in journey.definition.steps if s.action is not None}


def test_a_minimal_journey_compiles_into_indexed_steps_with_successors():
    journey = compile_text(MINIMAL, "j.yaml")
    assert isinstance(journey, Compiled)
    assert (journey.id, journey.version, journey.first) == ("j", 1, "a")
    assert journey.successor == {"a": "b", "b": None}
    assert journey.steps["a"].kind == "wait"
    assert journey.steps["a"].wait.for_ == 3600.0
    assert journey.steps["b"].kind == "action"
    assert journey.source == MINIMAL


def test_steps_without_an_id_are_named_by_position_and_exit_is_a_shorthand():
    text = "id: j\nversion: 1\ntrigger: {event: signup}\nreentry: always\nsteps:\n  - wait: 1d\n  - exit\n"
    journey = compile_text(text, "j.yaml")
    assert list(journey.steps) == ["step1", "step2"]
    assert journey.steps["step2"].exit == "completed"
    assert journey.definition.reentry.policy == "always"


def test_load_dir_reads_yml_files_too(tmp_path):
    (tmp_path / "a.yml").write_text(MINIMAL)
    (tmp_path / "notes.txt").write_text("not a journey")
    good, errors = load_dir(tmp_path)
    assert [j.id for j in good] == ["j"]
    assert errors == []


def test_load_dir_keeps_the_good_journeys_and_reports_every_bad_file(tmp_path):
    (tmp_path / "good.yaml").write_text(MINIMAL)
    (tmp_path / "bad.yaml").write_text(MINIMAL.replace("version: 1", "version: 0"))
    (tmp_path / "worse.yaml").write_text("id: [\n")
    good, errors = load_dir(tmp_path)
    assert [j.id for j in good] == ["j"]
    assert sorted(Path(e.file).name for e in errors) == ["bad.yaml", "worse.yaml"]
    bad = next(e for e in errors if e.file.endswith("bad.yaml"))
    assert bad.line == 2
    assert str(bad).startswith(f"{tmp_path / 'bad.yaml'}:2: version")


def test_a_folder_that_does_not_exist_is_one_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere"
    good, errors = load_dir(missing)
    assert good == []
    assert len(errors) == 1
    assert errors[0].file == str(missing)
    assert "no such folder" in errors[0].message


def test_a_file_that_cannot_be_read_as_text_is_an_error_on_its_line_and_the_others_still_load(tmp_path):
    (tmp_path / "good.yaml").write_text(MINIMAL)
    (tmp_path / "latin1.yaml").write_bytes(MINIMAL.encode() + b"description: caf\xe9\n")
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + MINIMAL.replace("id: j", "id: k").encode())
    good, errors = load_dir(tmp_path)
    assert sorted(j.id for j in good) == ["j", "k"]
    found = {Path(e.file).name: (e.line, e.message) for e in errors}
    assert found["latin1.yaml"] == (MINIMAL.count("\n") + 1, "not UTF-8 text (byte 0xe9)")
    assert found["folder.yaml"][1].startswith("cannot read it: ")


def test_two_files_with_the_same_id_and_version_are_an_error(tmp_path):
    (tmp_path / "one.yaml").write_text(MINIMAL)
    (tmp_path / "two.yaml").write_text(MINIMAL)
    _, errors = load_dir(tmp_path)
    assert len(errors) == 1
    assert errors[0].file.endswith("two.yaml")
    assert "journey j version 1 is also defined in" in errors[0].message
    assert errors[0].message.endswith("one.yaml")


def test_the_same_id_in_two_versions_is_fine(tmp_path):
    (tmp_path / "one.yaml").write_text(MINIMAL)
    (tmp_path / "two.yaml").write_text(MINIMAL.replace("version: 1", "version: 2"))
    good, errors = load_dir(tmp_path)
    assert errors == []
    assert sorted(j.version for j in good) == [1, 2]


def test_two_files_with_the_same_id_and_version_are_named_in_the_error(tmp_path):
    (tmp_path / "one.yaml").write_text(MINIMAL)
    (tmp_path / "two.yaml").write_text(MINIMAL)
    _, errors = load_dir(tmp_path)
    assert len(errors) == 1
    where = f"{errors[0].file} {errors[0].message}"
    assert "one.yaml" in where
    assert "two.yaml" in where


# --- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("3d", 259200.0),
        ("2w", 1209600.0),
        ("1.5h", 5400.0),
        ("1H 30M", 5400.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_durations_are_read_as_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1h30", "h", "5x", "-1h", "1 hour", "30 s s", True, -5])
def test_bad_durations_are_refused_with_a_value_error(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_bad_duration_in_a_file_names_the_file_the_line_and_the_text():
    text = MINIMAL.replace("wait: 1h", "wait: 1h30")
    error = only_error(text)
    assert error.line == line_with(text, "wait: 1h30")
    assert "'1h30' is not a duration" in error.message


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_a_wait_of_nan_or_infinity_is_refused(value):
    assert errors_of(MINIMAL.replace("wait: 1h", f"wait: {value}"))


@pytest.mark.parametrize(
    "value", ["[1, 2]", "{a: 1}", "2027-01-01", "!!binary aGk="], ids=["list", "map", "date", "bytes"]
)
def test_a_duration_that_is_not_text_or_a_number_is_an_invalid_journey(value):
    assert errors_of(MINIMAL.replace("    wait: 1h\n", f"    wait:\n      for: {value}\n"))


def test_a_zero_duration_is_allowed():
    assert parse_duration("0s") == 0.0


def test_a_cooldown_reentry_needs_a_duration():
    text = MINIMAL.replace("steps:", "reentry:\n  policy: cooldown\nsteps:")
    error = only_error(text)
    assert error.line == line_with(text, "policy: cooldown")
    assert "needs a cooldown duration" in error.message


# --- validation errors name the file and the line -------------------------------------------------


def test_bad_yaml_names_the_line_of_the_problem():
    text = "id: j\nversion: 1\ntrigger:\n  event: signup\n   channel: web\nsteps: [exit]\n"
    error = only_error(text)
    assert error.line == 5
    assert error.message.startswith("not valid YAML")


def test_a_tab_in_the_indentation_is_bad_yaml_on_its_line():
    error = only_error("id: j\nversion: 1\ntrigger:\n\tevent: signup\nsteps: [exit]\n")
    assert error.line == 4
    assert "not valid YAML" in error.message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n", "42\n"], ids=["empty", "list", "text", "number"])
def test_a_file_that_is_not_a_mapping_is_refused(text):
    error = only_error(text)
    assert error.line == 1
    assert "mapping" in error.message


def test_two_documents_in_one_file_are_refused():
    error = only_error(MINIMAL + "---\n" + MINIMAL)
    assert error.line == line_with(MINIMAL + "---\n", "---")
    assert "not valid YAML" in error.message


def test_a_missing_required_top_level_field_is_named():
    error = only_error(MINIMAL.replace("trigger:\n  event: signup\n", ""))
    assert error.line == 1
    assert error.message == "trigger: Field required"


def test_a_missing_required_field_inside_a_step_names_the_step_s_line():
    text = MINIMAL.replace("      channel: email\n", "")
    error = only_error(text)
    assert error.message == "steps.1.action.channel: Field required"
    assert error.line == line_with(text, "action: hello")  # where the action's fields begin


def test_every_error_of_a_file_is_reported_at_once():
    text = MINIMAL.replace("version: 1", "version: 0").replace("channel: email", "channel: Email!")
    errors = errors_of(text)
    assert {e.message.split(":")[0] for e in errors} == {"version", "steps.1.action.channel"}
    assert sorted(e.line for e in errors) == [line_with(text, "version: 0"), line_with(text, "channel: Email!")]


def test_a_step_target_that_does_not_exist_is_refused():
    text = MINIMAL.replace("    wait: 1h\n", "    wait: 1h\n    next: nowhere\n")
    error = only_error(text)
    assert "step 'a' goes to unknown step 'nowhere'" in error.message


def test_a_step_target_that_does_not_exist_names_the_line_of_the_reference():
    text = MINIMAL.replace("    wait: 1h\n", "    wait: 1h\n    next: nowhere\n")
    assert only_error(text).line == line_with(text, "next: nowhere")


def test_a_duplicate_step_id_names_the_line_of_the_second_step():
    text = MINIMAL.replace("  - id: b\n", "  - id: a\n")
    error = only_error(text)
    assert "unique" in error.message
    assert error.line == [n for n, line in enumerate(text.splitlines(), 1) if "id: a" in line][-1]


def test_a_duplicate_step_id_is_refused():
    assert "step ids must be unique" in only_error(MINIMAL.replace("  - id: b\n", "  - id: a\n")).message


def test_split_percentages_that_do_not_add_up_to_100_name_the_split_step():
    text = MINIMAL.replace(
        "  - id: b\n",
        "  - id: s\n    split:\n      - {variant: x, percent: 50}\n      - {variant: y, percent: 40}\n  - id: b\n",
    )
    error = only_error(text)
    assert error.line == line_with(text, "id: s")
    assert "split percentages must add up to 100" in error.message


def test_a_split_arm_must_be_a_variant_or_the_holdout():
    text = MINIMAL.replace(
        "  - id: b\n",
        "  - id: s\n    split:\n      - {percent: 50}\n      - {variant: y, percent: 50}\n  - id: b\n",
    )
    error = only_error(text)
    assert error.line == line_with(text, "{percent: 50}")
    assert "either 'variant: name' or 'holdout: true'" in error.message


def test_a_wait_with_two_kinds_names_the_wait():
    text = MINIMAL.replace("    wait: 1h\n", "    wait:\n      for: 1h\n      until: '10:00'\n")
    error = only_error(text)
    assert error.line == line_with(text, "for: 1h")
    assert "exactly one of 'for', 'event' or 'until'" in error.message


def test_a_wait_for_an_event_without_a_timeout_names_the_wait():
    text = MINIMAL.replace("    wait: 1h\n", "    wait:\n      event: purchase\n")
    error = only_error(text)
    assert error.line == line_with(text, "event: purchase")
    assert "needs a timeout" in error.message


@pytest.mark.parametrize("until", ["'25:00'", "'10am'", "'9:00'", "'10:60'", "'10:00:00'"])
def test_an_until_that_is_not_hh_mm_names_the_wait(until):
    text = MINIMAL.replace("    wait: 1h\n", f"    wait:\n      until: {until}\n")
    error = only_error(text)
    assert error.line == line_with(text, "until:")
    assert "is not HH:MM" in error.message


def test_an_unquoted_until_that_yaml_reads_as_a_number_still_means_that_time_of_day():
    text = MINIMAL.replace("    wait: 1h\n", "    wait:\n      until: 10:00\n")  # YAML 1.1 reads 600
    assert compile_text(text, "j.yaml").definition.steps[0].wait.until == "10:00"


@pytest.mark.parametrize(
    ("replace", "by", "expression"),
    [
        ("  event: signup\n", "  event: signup\n  when: state.events >\n", "state.events >"),
        ("steps:\n", "audience: '((('\nsteps:\n", "((("),
        ("steps:\n", "goal:\n  event: purchase\n  when: event.value >\nsteps:\n", "event.value >"),
        ("steps:\n", "exit_on:\n  - event: refund\n    when: '1 +'\nsteps:\n", "1 +"),
        (
            "  - id: b\n",
            "  - id: c\n    branch:\n      - when: state.x ==\n        next: b\n      - else: true\n        next: b\n"
            "  - id: b\n",
            "state.x ==",
        ),
        ("    wait: 1h\n", "    wait:\n      event: purchase\n      timeout: 1d\n      when: event.(\n", "event.("),
        ("      action: hello\n", "      action: hello\n      payload:\n        x: 'Hi {{ state.( }}'\n", "state.("),
    ],
    ids=["trigger.when", "audience", "goal.when", "exit_on.when", "branch case", "wait.when", "payload template"],
)
def test_a_cel_syntax_error_names_the_line_and_quotes_the_expression(replace, by, expression):
    text = MINIMAL.replace(replace, by)
    error = only_error(text)
    assert error.line == line_with(text, expression)
    assert f"in expression {expression!r}" in error.message
    assert "Syntax error" in error.message


def test_a_bad_template_further_down_a_payload_names_its_own_line():
    text = MINIMAL.replace(
        "      action: hello\n",
        "      action: hello\n      payload:\n        good: '{{ state.events }}'\n        bad: 'Hi {{ state.( }}'\n",
    )
    assert only_error(text).line == line_with(text, "bad:")


@pytest.mark.parametrize(
    ("replace", "by", "field"),
    [
        ("version: 1\n", "version: 1\ncolour: red\n", "colour"),
        ("  event: signup\n", "  event: signup\n  channels: web\n", "trigger.channels"),
        ("      action: hello\n", "      action: hello\n      colour: red\n", "steps.1.action.colour"),
        ("    wait: 1h\n", "    wait: 1h\n    comment: hi\n", "steps.0.comment"),
    ],
)
def test_an_unknown_field_is_refused_on_its_line(replace, by, field):
    text = MINIMAL.replace(replace, by)
    error = only_error(text)
    assert error.message == f"{field}: Extra inputs are not permitted"
    assert error.line == line_with(text, by.splitlines()[-1])


@pytest.mark.parametrize(
    ("replace", "by", "field"),
    [
        ("id: j\n", "id: Journey-1\n", "id"),
        ("version: 1\n", "version: 0\n", "version"),
        ("channel: email", "channel: E mail", "steps.1.action.channel"),
        ("action: hello", "action: hello\n      priority: 101", "steps.1.action.priority"),
        ("  - id: a\n", "  - id: 1a\n", "steps.0.id"),
    ],
)
def test_out_of_range_values_are_refused_and_named(replace, by, field):
    text = MINIMAL.replace(replace, by)
    error = only_error(text)
    assert error.message.startswith(f"{field}: ")
    assert error.line == line_with(text, by.splitlines()[-1].strip())


def test_a_step_of_two_kinds_is_refused():
    text = MINIMAL.replace("    wait: 1h\n", "    wait: 1h\n    exit: done\n")
    error = only_error(text)
    assert error.line == line_with(text, "id: a")
    assert "exactly one of wait, branch, split, action or exit" in error.message


# --- hostile definitions --------------------------------------------------------------------------


def test_a_cel_expression_can_not_reach_python():
    """CEL has no Python builtins: ``__import__`` is an unknown function, never a call into Python."""
    with pytest.raises(ConditionError, match="unknown function __import__"):
        Condition.compile("__import__('os').system('false') == 0")


@pytest.mark.parametrize("expression", ["state.(", "{{", "1 +", "'unterminated", "a ? b"])
def test_a_condition_that_does_not_parse_raises_a_condition_error_quoting_it(expression):
    with pytest.raises(ConditionError) as raised:
        Condition.compile(expression)
    assert raised.value.expression == expression
    assert repr(expression) in str(raised.value)


def test_a_journey_whose_trigger_calls_python_never_runs_it_and_the_customer_does_not_enter():
    text = MINIMAL.replace("  event: signup\n", "  event: signup\n  when: __import__('os').getpid() > 0\n")
    errors = errors_of(text)
    if errors:  # refused at load time: good
        return
    engine = Engine(Catalogue.of([compile_text(text, "j.yaml")]))
    event = Event("e-1", "signup", T0, "c-1", "web", T0, customer_id="c-1")
    decision = decide(None, event, T0, Policy(rules=frozenset()), engine)
    assert decision.state.journeys == {}
    assert [o.kind for o in decision.outcomes] == ["condition_error"]
    assert "__import__" in decision.outcomes[0].reason


@pytest.mark.parametrize("expression", ["__import__('os')", "sise(state.cart) > 0"])
def test_an_unknown_function_is_refused_when_the_file_is_loaded(expression):
    text = MINIMAL.replace("  event: signup\n", f'  event: signup\n  when: "{expression}"\n')
    assert errors_of(text)


def test_a_python_tag_in_a_journey_file_is_refused_without_running_anything():
    error = only_error(MINIMAL.replace("id: j\n", "id: !!python/name:os.system\n"))
    assert error.line == 1
    assert "not valid YAML" in error.message


def test_a_big_journey_loads():
    """Correctness only: a loader slow in the size would run into the suite's timeout."""
    steps = "".join(f"  - id: s{i}\n    wait: 1h\n" for i in range(500))
    text = f"id: j\nversion: 1\ndescription: '{'x' * 200_000}'\ntrigger: {{event: signup}}\nsteps:\n{steps}"
    journey = compile_text(text, "j.yaml")
    assert len(journey.steps) == 500


def test_moderately_nested_yaml_is_an_invalid_journey():
    error = errors_of(MINIMAL.replace("version: 1\n", "version: 1\ndescription: " + "[" * 100 + "]" * 100 + "\n"))
    assert [e.message for e in error] == ["nested deeper than 32 levels"]


@pytest.mark.parametrize("nesting", ["[" * 800 + "]" * 800, "{a: " * 800 + "1" + "}" * 800], ids=["lists", "maps"])
def test_deeply_nested_yaml_is_an_invalid_journey_not_a_crash(nesting):
    assert errors_of(MINIMAL.replace("version: 1\n", f"version: 1\ndescription: {nesting}\n"))


def test_a_recursive_alias_is_an_invalid_journey_not_a_crash():
    assert errors_of(MINIMAL.replace("version: 1\n", "version: 1\ndescription: &loop [*loop]\n"))


def test_a_billion_laughs_file_is_refused_quickly():
    laughs = "lol0: &a0 [lol]\n" + "".join(f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
    with within(0.5):
        assert errors_of(MINIMAL + laughs)


@pytest.mark.parametrize("key", ["? [1, 2]\n: x\n", "? {a: 1}\n: x\n"], ids=["list key", "map key"])
def test_a_complex_mapping_key_is_an_invalid_journey_not_a_crash(key):
    assert errors_of(MINIMAL + key)


def test_a_non_text_key_is_an_unknown_field_not_a_crash():
    errors = errors_of(MINIMAL + "1: x\n")
    assert len(errors) == 1
    assert errors[0].line == line_with(MINIMAL + "1: x\n", "1: x")


def test_nan_is_not_a_valid_split_percentage():
    text = MINIMAL.replace(
        "  - id: b\n",
        "  - id: s\n    split:\n      - {variant: x, percent: .nan}\n      - {variant: y, percent: 100}\n  - id: b\n",
    )
    error = only_error(text)
    assert error.line == line_with(text, ".nan")


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ('evnt.properties.query == "x"', "unknown name 'evnt' (the variables are event, state, trigger, now)"),
        ("state.purchses > 0", "state has no field 'purchses' (it has customer_id, stage, events,"),
        ("event.propertes.plan == 'pro'", "event has no field 'propertes' (it has event_id, type, channel, ts,"),
        ("trigger.kind == 'x'", "trigger has no field 'kind'"),
        ("has(state.cart.x) && customer > 1", "unknown name 'customer'"),
    ],
)
def test_a_misspelt_name_is_refused_on_its_line_not_left_to_count_as_false(when, message):
    text = MINIMAL.replace("  event: signup\n", f"  event: signup\n  when: {when}\n")
    error = only_error(text)
    assert error.line == line_with(text, "when:")
    assert message in error.message and repr(when) in error.message


def test_a_misspelt_name_in_a_payload_template_is_refused_on_its_line():
    text = MINIMAL.replace("action: hello", "action: hello\n      payload: {x: '{{ state.revenu }}'}")
    error = only_error(text)
    assert error.line == line_with(text, "payload:")
    assert "state has no field 'revenu'" in error.message


@pytest.mark.parametrize(
    "when",
    [
        "state.cart.exists(sku, sku.startsWith('a')) && [1, 2].all(n, n > 0)",
        "type(event.properties.x) == int || event.properties.x == null",
        'trigger.properties.query == b"q" || r"raw" == event.type',
        "has(state.consent.email) && now - state.last_seen > 60.0 && true",
    ],
)
def test_names_that_are_variables_bound_literals_or_types_pass(when):
    assert errors_of(MINIMAL.replace("  event: signup\n", f"  event: signup\n  when: {when}\n")) == []


def test_the_fields_a_condition_may_name_are_the_ones_the_engine_shows():
    from orchestrator.journeys import context
    from orchestrator.journeys.conditions import EVENT_FIELDS, STATE_FIELDS

    assert tuple(context.STATE_VIEW) == STATE_FIELDS
    assert tuple(context.EVENT_VIEW) == EVENT_FIELDS
