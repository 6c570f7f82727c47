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
