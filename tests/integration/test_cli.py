"""The command line: helpful on success, one clear line and a non-zero exit on failure."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.conftest import BOOTSTRAP, REDIS_URL
from tests.integration.harness import WorkerProcess, as_json, cli_env, event, free_port
from tests.unit.cli_run import run_cli

JOURNEYS = Path(__file__).parents[2] / "journeys"
COMMANDS = ["worker", "send", "tail", "customer", "simulate", "replay", "erase", "explain", "serve"]


run = run_cli  # the command as a user runs it


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")

    assert result.returncode == 0
    assert "Usage" in result.stdout


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["send", "-"], "Kafka"),
        (["tail", "--timeout", "5"], "Kafka"),
        (["worker"], "Kafka"),
        (["customer", "anyone"], "Redis"),
    ],
)
def test_an_unreachable_service_gives_one_line_and_exit_2(args: list[str], what: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    env = cli_env("cli.", dead, f"redis://{dead}/0")

    result = run(*args, env=env, stdin=as_json(event("x-1", "search", "x", query="q")) + "\n")

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"orchestrator: error: cannot reach {what} at ")
    assert dead in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["customer", "anyone"], ["explain", "anyone"], ["worker"]])
def test_a_redis_that_answers_with_an_error_says_what_it_said_and_not_that_it_is_down(args: list[str]) -> None:
    """A database number Redis does not have (16 by default) read as 'cannot reach Redis; is it running?'."""
    no_such_db = REDIS_URL.rpartition("/")[0] + "/99"

    result = run(*args, env=cli_env("cli.", BOOTSTRAP, no_such_db))

    assert result.returncode == 1, result.stderr
    assert result.stderr == f"orchestrator: error: Redis at {no_such_db} refused: DB index is out of range\n"


def test_send_refuses_invalid_lines_with_their_number_and_sends_the_rest(worker: WorkerProcess) -> None:
    env = cli_env(worker.prefix, worker.bootstrap, worker.redis_url)
    lines = [
        as_json(event("s-1", "search", "sam", query="first")),
        "{not json",
        json.dumps({"event_id": "s-x", "type": "search", "ts": "noon", "customer_id": "sam"}),
        as_json(event("s-2", "search", "sam", query="second")),
    ]

    result = run("send", "--topic", "search", env=env, stdin="\n".join(lines) + "\n")

    assert result.returncode == 1
    assert "line 2: not valid JSON" in result.stderr
    assert "line 3: invalid: ts:" in result.stderr
    assert "sent 2 event(s)" in result.stderr
    assert [c["payload"]["query"] for c in worker.commands(2, customer="sam")] == ["first", "second"]


def test_send_refuses_what_the_workers_ingest_would_dead_letter(worker: WorkerProcess) -> None:
    """Each line is put through the worker's own ingest (with its limits and its allowed
    skew) before it goes out; none of them reaches the dead-letter topic."""
    env = cli_env(worker.prefix, worker.bootstrap, worker.redis_url)
    good = event("d-1", "search", "dora", query="tent")
    lines = [
        as_json(good | {"event_id": "d-2", "ts": time.time() + 3600}),
        as_json(good | {"event_id": "d-3", "properties": {"p": "x" * 70_000}}),
        as_json(good | {"event_id": "d-4", "properties": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}),
        as_json(good | {"event_id": "d-5", "ts": 915148800}),
        as_json(good | {"event_id": "d-6"})[:-1] + f',"x":{2**70}}}',
        as_json(good | {"event_id": "d-7", "ts": time.time() + 60}),  # within the allowed skew
        as_json(good),
    ]

    result = run("send", "--topic", "search", env=env, stdin="\n".join(lines) + "\n")

    assert result.returncode == 1
    refused = [line for line in result.stderr.splitlines() if line.startswith("orchestrator: line ")]
    assert [line.split(": ")[1:3] for line in refused] == [
        ["line 1", "future_timestamp"],
        ["line 2", "too_large"],
        ["line 3", "too_deep"],
        ["line 4", "invalid"],
        ["line 5", "not valid JSON"],
    ]
    assert "sent 2 event(s)" in result.stderr
    assert "5 line(s) refused" in result.stderr
    assert worker.commands(1, customer="dora")  # sent and decided on
    for reason in ("future_timestamp", "too_large", "too_deep", "invalid", "undecodable"):
        assert worker.metric("orchestrator_events_rejected_total", reason=reason) == 0


def test_send_refuses_an_action_topic_before_connecting(worker: WorkerProcess) -> None:
    env = cli_env(worker.prefix, worker.bootstrap, worker.redis_url)

    result = run("send", "--topic", "actions.ads", env=env, stdin=as_json(event("a-1", "search", "ann")) + "\n")

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"orchestrator: error: 'actions.ads' is not an events topic: give a channel (web) or a topic "
        f"{worker.prefix}events.<channel>"
    )


def test_send_raw_sends_every_line_a_blank_one_as_an_empty_record(worker: WorkerProcess) -> None:
    """``--raw`` is for trying the dead-letter topic: a blank line must reach it as ``empty``."""
    env = cli_env(worker.prefix, worker.bootstrap, worker.redis_url)
    before, after = event("r-1", "search", "rae", query="before"), event("r-2", "search", "rae", query="after")
    lines = [as_json(before), "", as_json(after)]

    result = run("send", "--topic", "raw", "--raw", env=env, stdin="\n".join(lines) + "\n")

    assert result.returncode == 0, result.stderr
    assert "sent 3 event(s)" in result.stderr
    [dead] = worker.read(f"^{worker.names.dlq}$", count=1)
    assert dead.value == b"" and ("dlq.reason", b"empty") in dead.headers
    commands = worker.commands(2, customer="rae")  # unkeyed, so maybe on two partitions: any order
    assert sorted(c["payload"]["query"] for c in commands) == ["after", "before"]
    assert worker.metric("orchestrator_events_rejected_total", reason="empty") == 1


def test_tail_filters_by_customer_and_action_and_prints_json(worker: WorkerProcess) -> None:
    worker.publish("web", event("t-1", "product_view", "tom", product="sku-a"))
    worker.publish("web", event("t-2", "purchase", "tom", product="sku-a", value=5))
    worker.publish("web", event("t-3", "product_view", "tina", product="sku-b"))
    env = cli_env(worker.prefix, worker.bootstrap, worker.redis_url)

    result = run(
        "tail",
        "--from-beginning",
        "--json",
        "--customer",
        "tom",
        "--action",
        "upsell",
        "--max",
        "1",
        "--timeout",
        "45",
        env=env,
    )

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    command = json.loads(line)
    assert (command["customer_id"], command["action"], command["channel"]) == ("tom", "upsell", "email")


def test_tail_prints_one_readable_line_per_command(worker: WorkerProcess) -> None:
    worker.publish("search", event("h-1", "search", "hal", query="stove"))
    env = cli_env(worker.prefix, worker.bootstrap, worker.redis_url)

    result = run("tail", "ads", "--from-beginning", "--customer", "hal", "--max", "1", "--timeout", "45", env=env)

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert "remarketing_ad" in line and "hal" in line and "searched for 'stove'" in line


def test_tail_exits_3_when_too_few_commands_arrive_in_time(worker: WorkerProcess) -> None:
    env = cli_env(worker.prefix, worker.bootstrap, worker.redis_url)

    result = run("tail", "--customer", "nobody", "--max", "1", "--timeout", "2", env=env)

    assert result.returncode == 3
    assert result.stderr.strip() == "orchestrator: timed out after 2s with 0 of 1 commands"


def test_replay_prints_the_same_in_one_process_and_in_two_or_four(tmp_path: Path) -> None:
    """Split over processes, the file read and replayed in parallel, the output is the same."""
    history = tmp_path / "history.jsonl"
    made = run("simulate", "--output", str(history), "--count", "6000", "--span", "10d", "--customers", "300")
    assert made.returncode == 0, made.stderr
    outputs = []
    for processes in ("1", "2", "4"):
        done = run("replay", str(history), "--journeys", str(JOURNEYS), "--json", "--processes", processes)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        summary = json.loads(lines[-1])["summary"]
        summary.pop("seconds")
        outputs.append((lines[:-1], summary))
    assert outputs[0][0], "the history should produce commands"
    assert outputs[0] == outputs[1] == outputs[2]


def test_replay_reads_standard_input_as_it_reads_a_file(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    made = run("simulate", "--output", str(history), "--count", "600", "--customers", "60")
    assert made.returncode == 0, made.stderr
    outputs = []
    for source, stdin in ((str(history), ""), ("-", history.read_text())):
        done = run("replay", source, "--journeys", str(JOURNEYS), "--json", "--processes", "2", stdin=stdin)
        assert done.returncode == 0, done.stderr
        *commands, last = done.stdout.splitlines()
        summary = json.loads(last)["summary"]
        summary.pop("seconds")
        outputs.append((commands, summary))
    assert outputs[0][0] and outputs[0] == outputs[1]
    bad = run("replay", "-", "--journeys", str(JOURNEYS), stdin="not json\n")
    assert bad.returncode == 1 and bad.stderr.startswith("orchestrator: error: <stdin>:1: ")


@pytest.mark.parametrize("processes", ["1", "4"])
def test_replay_names_the_first_bad_line_and_prints_no_command(tmp_path: Path, processes: str) -> None:
    history = tmp_path / "history.jsonl"
    made = run("simulate", "--output", str(history), "--count", "400", "--customers", "50")
    assert made.returncode == 0, made.stderr
    lines = history.read_text().splitlines()
    lines[300] = '{"event_id": "x", "type": "search", "ts": "yesterday", "customer_id": "c-1"}'
    lines[350] = "not json"
    history.write_text("\n".join(lines) + "\n")

    done = run("replay", str(history), "--journeys", str(JOURNEYS), "--processes", processes)

    assert done.returncode == 1
    assert done.stdout == ""
    [message] = done.stderr.strip().splitlines()
    assert message.startswith(f"orchestrator: error: {history}:301: ts: ")
