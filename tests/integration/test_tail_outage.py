"""``orchestrator tail`` rides out a broker that goes away and comes back, as a worker does:
one line when it goes, one when it is back, and the commands sent after it are shown.

The shared broker cannot be stopped under the other tests, so this module starts its own,
with ``deploy/local/stack.sh`` on free ports and a data folder of its own (the jars are the
ones ``make up`` fetched)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from kafka import KafkaProducer

from schemas.codec import content_type_header
from tests.integration.harness import cli_env, free_port

STACK = Path(__file__).parents[2] / "deploy" / "local" / "stack.sh"
PREFIX = "outage."


class OwnBroker:
    """A second local stack: Kafka (and the Redis stack.sh starts beside it) on free ports."""

    def __init__(self, folder: Path) -> None:
        self.kafka_port = free_port()
        self.env = os.environ | {
            "STACK_DIR": str(folder),
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "REDIS_PORT": str(free_port()),
            "KAFKA_HEAP": "384m",
        }
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"

    def run(self, action: str) -> None:
        subprocess.run(["bash", str(STACK), action], env=self.env, check=True, capture_output=True, timeout=180)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[OwnBroker]:
    own = OwnBroker(tmp_path / "stack")
    own.run("up")
    try:
        yield own
    finally:
        own.run("down")


def lines_of(stream: IO[str], readers: list[threading.Thread]) -> queue.Queue[str]:
    """Each line ``stream`` gives, as it comes, without blocking the test on a read."""
    found: queue.Queue[str] = queue.Queue()
    readers.append(threading.Thread(target=lambda: [found.put(line) for line in stream], daemon=True))
    readers[-1].start()
    return found


def next_line(lines: queue.Queue[str], containing: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if containing in line:
            return line


def send_command(bootstrap: str, number: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    command = {"action_id": f"a-{number}", "customer_id": "olga", "action": "thank_you", "channel": "email"}
    producer.send(f"{PREFIX}actions.email", json.dumps(command).encode(), headers=content_type_header("json"))
    producer.flush(timeout=30)
    producer.close()


def test_tail_waits_out_a_broker_outage_says_so_once_each_way_and_shows_what_comes_after(
    broker: OwnBroker,
) -> None:
    send_command(broker.bootstrap, 1)
    env = cli_env(PREFIX, broker.bootstrap, "redis://127.0.0.1:1/0")
    tail = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "tail", "--from-beginning", "--json", "--max", "2", "--timeout", "240"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert tail.stdout is not None and tail.stderr is not None
    readers: list[threading.Thread] = []
    try:
        out, err = lines_of(tail.stdout, readers), lines_of(tail.stderr, readers)
        assert json.loads(next_line(out, "a-1"))["action_id"] == "a-1"

        broker.run("down")
        lost = next_line(err, "lost the broker")
        broker.run("up")
        send_command(broker.bootstrap, 2)

        assert json.loads(next_line(out, "a-2"))["action_id"] == "a-2"
        assert tail.wait(timeout=60) == 0
        rest = [err.get_nowait() for _ in range(err.qsize())]
    finally:
        tail.kill()
        tail.wait()
        for reader in readers:  # to the end of what tail wrote, before its pipes are closed
            reader.join(timeout=10)
        tail.stdout.close()
        tail.stderr.close()
    assert lost.startswith("orchestrator: lost the broker (")
    assert [line for line in rest if "lost" in line] == []  # once, not every retry
    assert any("the broker is back; following again" in line for line in rest), rest
