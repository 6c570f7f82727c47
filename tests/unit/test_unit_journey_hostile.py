"""Hostile journey files: input meant to crash, freeze or fool ``journeys validate`` and the
loader is refused with one line naming file and line, never a traceback, a hang or a crash."""

from __future__ import annotations

import pytest
from test_unit_journey_files import only_error
from test_unit_journey_validate import validate, write

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
