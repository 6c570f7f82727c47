"""Bad input to the CLI that is refused before any broker or Redis is asked: one line
``orchestrator: error: ...`` and exit 1, or click's usage error (exit 2) for an option out
of its range; never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from cli_run import run_cli

from orchestrator.errors import CliError, Unreachable, redis_failure

JOURNEYS = Path(__file__).parents[2] / "journeys"
EVENT = '{"event_id": "a", "type": "search", "ts": 1790000000, "customer_id": "c"}'


# Nothing listens there: a command that failed to refuse its input could reach no one.
NOWHERE = {"ORCH_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ORCH_REDIS_URL": "redis://127.0.0.1:1/0"}


def cli(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")} | NOWHERE | env
    return run_cli(*args, env=clean, stdin=stdin)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The message of a CLI error, checked to be one line with exit 1."""
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("orchestrator: error: ")
    return line.removeprefix("orchestrator: error: ")


def usage_error(result: subprocess.CompletedProcess[str], option: str) -> None:
    assert result.returncode == 2, result.stderr
    assert f"Invalid value for '{option}'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def one_event(tmp_path: Path) -> Path:
    path = tmp_path / "history.jsonl"
    path.write_text(EVENT + "\n")
    return path


@pytest.mark.parametrize(("topic", "named"), [("actions.ads", "'actions.ads'"), ("Bad Topic!", "'events.Bad Topic!'")])
def test_send_writes_only_to_events_topics(topic: str, named: str) -> None:
    message = one_line_error(cli("send", "-", "--topic", topic, stdin=EVENT + "\n"))

    assert message == f"{named} is not an events topic: give a channel (web) or a topic events.<channel>"


def test_send_and_replay_say_a_directory_is_one(tmp_path: Path) -> None:
    assert one_line_error(cli("send", str(tmp_path))) == f"{tmp_path} is a directory, not a file of JSON lines"
    assert (
        one_line_error(cli("replay", str(tmp_path), "-j", str(JOURNEYS)))
        == f"{tmp_path} is a directory, not a file of JSON lines"
    )


def test_replay_refuses_an_integer_beyond_64_bits_as_the_stream_does(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text(EVENT[:-1] + f', "properties": {{"v": {2**70}}}}}\n')

    message = one_line_error(cli("replay", str(history), "-j", str(JOURNEYS)))

    assert message == f"{history}:1: not valid JSON: integer 11805916207174113034... out of 64-bit range"


def test_replay_refuses_more_processes_than_it_would_ever_fork(one_event: Path) -> None:
    usage_error(cli("replay", str(one_event), "-j", str(JOURNEYS), "--processes", "100000"), "--processes")


def test_replay_forks_no_more_processes_than_there_are_events(one_event: Path) -> None:
    result = cli("replay", str(one_event), "-j", str(JOURNEYS), "--processes", "128", "--json")

    assert result.returncode == 0, result.stderr
    assert '"events": 1' in result.stdout


def test_simulate_says_when_it_cannot_write_the_history_file(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "h.jsonl"

    assert one_line_error(cli("simulate", "--output", str(missing))) == (
        f"cannot write {missing}: No such file or directory"
    )
    assert one_line_error(cli("simulate", "--output", str(tmp_path))) == f"cannot write {tmp_path}: Is a directory"


def test_replay_reads_a_file_that_is_no_regular_one_such_as_a_pipe() -> None:
    """``<(zcat history.gz)`` names a pipe under /dev/fd: it is there, and can be read."""
    result = cli("replay", "/dev/stdin", "-j", str(JOURNEYS), stdin=EVENT.replace('"search"', '"signup"') + "\n")
    assert result.returncode == 0, result.stderr
    assert " welcome " in result.stdout


@pytest.mark.parametrize("channel", ["BAD CHANNEL", "", "x/../y", "Web", "a" * 65])
def test_replay_refuses_a_default_channel_no_event_could_name(one_event: Path, channel: str) -> None:
    assert one_line_error(cli("replay", str(one_event), "--rules", "--channel", channel)) == (
        f"--channel {channel!r}: a channel is lower-case letters, digits, '_' or '-'"
    )


def test_simulate_says_when_the_disk_is_full(tmp_path: Path) -> None:
    assert one_line_error(cli("simulate", "--output", "/dev/full", "--count", "10")) == (
        "cannot write /dev/full: No space left on device"
    )


def test_simulate_writes_the_history_to_standard_output_for_a_dash(tmp_path: Path) -> None:
    result = cli("simulate", "--output", "-", "--count", "20", "--customers", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(json.loads(line)["event_id"] for line in lines)
    assert f"wrote {len(lines)} event(s) to standard output" in result.stderr
    assert not (Path.cwd() / "-").exists()


def test_simulate_stops_quietly_when_the_reader_of_its_output_has_enough() -> None:
    """``simulate --output - | head``: no error, no traceback, once head has its lines."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")} | NOWHERE
    command = [sys.executable, "-m", "orchestrator", "simulate", "--output", "-", "--count", "20000"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())["event_id"]
        proc.stdout.close()
        errors = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0
    assert "error" not in errors and "Traceback" not in errors


def test_replay_says_in_one_line_when_its_output_cannot_be_written(tmp_path: Path) -> None:
    """A full disk under standard output: one line and exit 1, not a traceback, and not a
    second one from the interpreter's own flush at exit."""
    signup = tmp_path / "signup.jsonl"
    signup.write_text(EVENT.replace('"search"', '"signup"') + "\n")  # the welcome journey greets them
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")} | NOWHERE
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", "replay", str(signup), "-j", str(JOURNEYS)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=clean,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["orchestrator: error: No space left on device"]


@pytest.mark.parametrize("rate", ["0", "-1", "nan"])
def test_simulate_refuses_a_rate_that_is_not_above_zero_before_sending(rate: str) -> None:
    result = cli("simulate", "--rate", rate, "--duration", "2")

    usage_error(result, "--rate")
    assert "must be above 0" in result.stderr
    assert "simulated" not in result.stderr


def test_simulate_needs_someone_to_simulate(tmp_path: Path) -> None:
    usage_error(cli("simulate", "--customers", "0", "--output", str(tmp_path / "h.jsonl")), "--customers")


@pytest.mark.parametrize("command", [["customer", "a"], ["explain", "a"], ["serve"], ["worker"]])
def test_a_bad_redis_url_is_one_line_in_every_command_that_takes_one(command: list[str]) -> None:
    message = one_line_error(cli(*command, "--redis-url", "foo://bar"))

    assert message == (
        "bad setting redis_url: Redis URL must specify one of the following schemes (redis://, rediss://, unix://)"
    )


def test_a_redis_url_with_a_bad_port_is_one_line() -> None:
    message = one_line_error(cli("customer", "a", "--redis-url", "redis://host:port/0"))

    assert message == "bad setting redis_url: Port could not be cast to integer value as 'port'"


def test_a_bad_redis_url_from_the_environment_is_refused_too() -> None:
    message = one_line_error(cli("customer", "a", ORCH_REDIS_URL="foo://bar"))

    assert message.startswith("bad setting redis_url: Redis URL must specify one of the following schemes")


def test_a_redis_that_answers_with_an_error_is_told_apart_from_one_that_cannot_be_reached() -> None:
    url = "redis://127.0.0.1:6379/99"
    refused = [redis.ResponseError("DB index is out of range"), redis.AuthenticationError("invalid password")]
    for exc in refused:
        failure = redis_failure(url, exc)
        assert type(failure) is CliError and failure.exit_code == 1
        assert str(failure) == f"Redis at {url} refused: {exc}"
    for exc in [redis.ConnectionError("Connection refused"), redis.TimeoutError(), ConnectionRefusedError()]:
        failure = redis_failure(url, exc)
        assert isinstance(failure, Unreachable) and failure.exit_code == 2
        assert str(failure).startswith(f"cannot reach Redis at {url} ")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@127.0.0.1:6379/99", "redis://:***@127.0.0.1:6379/99"),
        ("rediss://me:s3cret@h/0", "rediss://me:***@h/0"),
    ],
)
def test_a_redis_failure_names_the_redis_without_its_password(url: str, shown: str) -> None:
    for exc in [redis.AuthenticationError("invalid password"), redis.ConnectionError("Connection refused")]:
        message = str(redis_failure(url, exc))
        assert f"Redis at {shown} " in message
        assert "s3cret" not in message


def test_a_redis_that_cannot_be_reached_is_named_without_its_password() -> None:
    result = cli("customer", "a", "--redis-url", "redis://user:s3cret@127.0.0.1:1/0")

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "orchestrator: error: cannot reach Redis at redis://user:***@127.0.0.1:1/0 (ConnectionError); "
        "is it running? try 'make up'"
    )


AT_AFTER_PATH = (
    "an '@' after a '/', '?' or '#' (in a password, or in the query): percent-encode them (%2F, %3F, %23, %40)"
)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://:s3/cret@host:6379/0", AT_AFTER_PATH),
        ("redis://host:6379/0?client_name=s3@x", AT_AFTER_PATH),  # no password, but which is it? (%40 works)
        ("redis://:s3\uff20cret@host/0", "netloc ':***@host' contains invalid characters under NFKC normalization"),
        (f"redis://:s3cret@{'h' * 64}:6379/0", f"{'h' * 64!r} is no host name (label too long)"),
        ("redis://:s3cret@a..b/0", "'a..b' is no host name (label empty or too long)"),
    ],
)
def test_a_malformed_redis_url_is_one_line_that_does_not_quote_its_password(url: str, message: str) -> None:
    """urllib quotes part of a URL in some of its errors, and a host name the resolver refuses
    raised a UnicodeError no command caught (a traceback)."""
    said = one_line_error(cli("customer", "a", "--redis-url", url))

    assert said == f"bad setting redis_url: {message}"
    assert "s3" not in said


def test_a_topic_prefix_kafka_would_refuse_is_a_bad_setting() -> None:
    message = one_line_error(cli("send", "-", ORCH_TOPIC_PREFIX="Bad Prefix!"))

    assert message == "bad setting topic_prefix: String should match pattern '^[A-Za-z0-9._-]*$'"


@pytest.mark.parametrize(("option", "value"), [("--max", "0"), ("--timeout", "-1"), ("--timeout", "nan")])
def test_tail_refuses_a_count_or_timeout_out_of_range(option: str, value: str) -> None:
    usage_error(cli("tail", option, value), option)


@pytest.mark.parametrize("wait", ["nan", "-1", "inf"])
def test_erase_refuses_a_wait_that_is_no_number_of_seconds_before_asking_for_anything(wait: str) -> None:
    result = cli("erase", "c-1", "--wait", wait)

    usage_error(result, "--wait")
    assert "must be 0 or more seconds" in result.stderr


def test_journeys_validate_says_a_file_is_not_a_folder(tmp_path: Path) -> None:
    welcome = JOURNEYS / "welcome.yaml"

    assert one_line_error(cli("journeys", "validate", str(welcome))) == (
        f"{welcome} is a file, not a folder: give the folder of journey files that holds it"
    )
    assert one_line_error(cli("journeys", "validate", str(tmp_path / "nope"))) == f"no such folder: {tmp_path}/nope"


def test_replay_runs_the_built_in_rules_alone_without_a_journey_folder(one_event: Path) -> None:
    result = cli("replay", str(one_event), "--rules", "--json")

    assert result.returncode == 0, result.stderr
    assert '"events": 1' in result.stdout


def test_replay_with_neither_journeys_nor_rules_says_what_it_needs(one_event: Path) -> None:
    message = one_line_error(cli("replay", str(one_event)))

    assert message == "nothing to replay with: give --journeys DIR, --rules, or both"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("BAD CHAN", "'actions.BAD CHAN' is not an actions topic: give a channel (ads) or a topic actions.<channel>"),
        ("actions.Ads", "'actions.Ads' is not an actions topic: give a channel (ads) or a topic actions.<channel>"),
        ("my topic.x", "'my topic.x' is not an actions topic: give a channel (ads) or a topic actions.<channel>"),
        (
            "orchestrator.dlq",
            "'orchestrator.dlq' is not an actions topic: give a channel (ads) or a topic actions.<channel>",
        ),
        ("a" * 65, f"'actions.{'a' * 65}' is not an actions topic: give a channel (ads) or a topic actions.<channel>"),
    ],
)
def test_tail_refuses_a_channel_or_topic_no_command_can_be_on_before_asking_kafka(name: str, message: str) -> None:
    result = cli("tail", "ads", name)

    assert one_line_error(result) == message


@pytest.mark.parametrize("name", ["actions.ads", "actions.Ads", "actions."])
def test_tail_wants_the_actions_topics_behind_the_prefix_as_send_wants_its_events_topics(name: str) -> None:
    message = one_line_error(cli("tail", name, ORCH_TOPIC_PREFIX="qa1."))

    assert message == f"{name!r} is not an actions topic: give a channel (ads) or a topic qa1.actions.<channel>"


def test_send_refuses_a_channel_longer_than_kafka_allows_in_one_line() -> None:
    message = one_line_error(cli("send", "-", "--topic", "a" * 240, stdin=EVENT + "\n"))

    assert message.startswith(f"'events.{'a' * 240}' is not an events topic")


def test_a_worker_refuses_its_journeys_before_asking_kafka(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("id: bad\n")

    message = cli("worker", ORCH_JOURNEYS_DIR=str(tmp_path)).stderr

    assert message.startswith(f"orchestrator: error: journeys in {tmp_path} are invalid:\n{tmp_path / 'bad.yaml'}")
    assert "cannot reach Kafka" not in message


@pytest.mark.parametrize(("command", "option"), [("serve", "--port"), ("worker", "--web-port")])
@pytest.mark.parametrize("port", ["0", "70000", "-5"])
def test_a_port_out_of_range_is_a_usage_error(command: str, option: str, port: str) -> None:
    usage_error(cli(command, option, port, ORCH_API_TOKENS="t"), option)
