"""The ``orchestrator`` entry point: every command reachable, only the one asked for imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.main import COMMANDS, GROUPS


def run(*code_or_args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *code_or_args], capture_output=True, text=True, timeout=60, check=False)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run("-m", "orchestrator", *args)


def test_the_help_lists_every_command() -> None:
    result = cli("--help")

    assert result.returncode == 0, result.stderr
    for name in COMMANDS + GROUPS:
        assert f" {name} " in result.stdout


@pytest.mark.parametrize("name", COMMANDS + GROUPS)
def test_each_command_answers_its_own_help(name: str) -> None:
    result = cli(name, "--help")

    assert result.returncode == 0, result.stderr
    assert f"orchestrator {name}" in result.stdout


def test_a_mistyped_command_is_named_with_a_non_zero_exit() -> None:
    result = cli("wroker")

    assert result.returncode == 2
    assert "No such command 'wroker'" in result.stderr


def test_a_command_loads_only_what_it_needs() -> None:
    """``tail`` needs neither CEL, nor Redis, nor the journey engine."""
    code = (
        "import sys; sys.argv = ['orchestrator', 'tail', '--help']\n"
        "from orchestrator.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('cel', 'redis', 'orchestrator.journeys.engine') if m in sys.modules))"
    )
    result = run("-c", code)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize(("command", "option"), [("replay", "--after"), ("simulate", "--span")])
def test_a_bad_duration_option_is_one_line_and_exit_1(command: str, option: str, tmp_path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text('{"event_id": "a", "type": "search", "ts": 1790000000, "customer_id": "c"}\n')
    args = (
        [str(history), "--journeys", str(Path(__file__).parents[2] / "journeys")]
        if command == "replay"
        else ["--output", str(history)]
    )
    result = cli(command, *args, option, "soon")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"orchestrator: error: {option}: 'soon' is not a duration like 30s, 15m, 1h30m, 3d or 2w"
    ]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["explain", "c-42", "--limit", "0"], id="out-of-range"),
        pytest.param(["erase"], id="missing-argument"),
        pytest.param(["tail", "--max", "many"], id="wrong-type"),
        pytest.param(["send", "-", "--no-such-option"], id="unknown-option"),
    ],
)
def test_a_command_line_click_refuses_is_a_usage_error_with_exit_2(args: list[str]) -> None:
    """What the README's exit-code table says of 2: click's usage message, never a traceback."""
    result = cli(*args)

    assert result.returncode == 2
    assert result.stderr.startswith("Usage: ")
    assert f"orchestrator {args[0]} " in result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr


def test_the_readme_documents_every_exit_code_the_commands_use() -> None:
    """0 and 1, 2 for usage errors and unreachable services, tail's 3, the worker's 75, Ctrl-C's 130."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split("Exit codes:\n\n", 1)[1].split("\n\n", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}  # past the header and ---

    assert sorted(rows, key=int) == ["0", "1", "2", "3", "75", "130"]
    assert "the command line itself is wrong" in rows["2"]
    assert "cannot be reached" in rows["2"]
