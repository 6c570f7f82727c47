"""Hostile journey files: input meant to crash, freeze or fool ``journeys validate`` and the
loader is refused with one line naming file and line, never a traceback, a hang or a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_unit_journey_files import line_with, only_error
from test_unit_journey_validate import validate, write

from orchestrator.journeys.loader import compile_text

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


def test_a_whole_number_beyond_64_bits_is_refused_on_its_line():
    text = with_payload("n: 99999999999999999999")
    error = only_error(text)
    assert error.line == line_with(text, "n: 9")
    assert "too large" in error.message


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
