"""Replay is the stream without Kafka: in event time, the same history gives the same commands.

Exactly the same: every command, with its id, time and payload, and nothing else. Two
things had to hold for that, and this test keeps both:

* The worker fires a customer's overdue waits before their next event, one due time at a
  time and each at its own time, as replay does (``agents.decide.apply_in_event_time``;
  unit tests in ``tests/unit/test_unit_event_time_parity.py``). Before, whether the
  timer's wake or the next event came first decided whether an opt-out in that event
  held the wait back, whether the wait had expired by then, and which of several waits
  a frequency cap let through.
* The history topic exists before the worker starts, so the worker reads it from its
  first assignment. Published to a topic the worker only discovers later, the records
  wait for the resubscription's rebalance, and faust-streaming sometimes drops a few of
  them there (records fetched for a partition the group never committed, discarded
  during the rebalance and not read again): the stream then never sees those events.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2

from orchestrator.kafka.clients import ensure_topics
from orchestrator.topics import TopicNames
from tests.integration.conftest import BOOTSTRAP, running_worker
from tests.integration.harness import WorkerProcess, cli_env

PARTITIONS = 4
HISTORY = "history"  # the channel, so the topic is events.history
JOURNEYS = Path(__file__).parents[2] / "journeys"


@pytest.fixture(scope="module")
def event_time_worker(prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    # History must enter in time order: one source partition, so no partition's clock runs
    # ahead of events still on their way from another. And it must exist before the worker
    # starts: subscribed from the first assignment, never by a rebalance with records waiting.
    ensure_topics(BOOTSTRAP, [TopicNames(prefix).events(HISTORY)], 1)
    settings = {
        "ORCH_RULES": "",
        "ORCH_CLOCK": "event",
        "ORCH_ALLOWED_LATENESS_S": "0",
        "ORCH_TIMER_INTERVAL_S": "0.1",
        "ORCH_JOURNEYS_DIR": str(JOURNEYS),
        "ORCH_PARTITIONS": str(PARTITIONS),
    }
    with running_worker(prefix, tmp_path_factory.mktemp("etworker"), **settings) as proc:
        yield proc


def test_replay_and_the_streaming_pipeline_agree_on_the_commands(
    event_time_worker: WorkerProcess, tmp_path: Path
) -> None:
    history = tmp_path / "history.jsonl"
    events = _history(history)
    end = max(e["ts"] for e in events)
    _append_clock_ticks(history, end + 1)  # move every partition's clock to the end

    replayed = _replay(history)
    worker = event_time_worker
    sent = subprocess.run(
        [sys.executable, "-m", "orchestrator", "send", str(history), "--topic", HISTORY],
        env=cli_env(worker.prefix, worker.bootstrap, worker.redis_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sent.returncode == 0, sent.stderr
    streamed = worker.commands(len(replayed), timeout=90)
    time.sleep(3)  # anything extra the stream might add would arrive by now
    streamed = worker.commands(len(replayed) + 1, timeout=5)

    assert len(replayed) > 50, "the history must exercise the journeys"
    replay_set, stream_set = set(_comparable(replayed)), set(_comparable(streamed))
    missing, extra = sorted(replay_set - stream_set), sorted(stream_set - replay_set)
    assert stream_set == replay_set, f"replay only: {missing}\nstream only: {extra}"
    assert len(stream_set) == len(streamed), "the stream sent a command twice"
    assert len(replay_set) == len(replayed), "replay sent a command twice"


def _history(path: Path) -> list[dict]:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "simulate",
            "--output",
            str(path),
            "--count",
            "1500",
            "--span",
            "12d",
            "--customers",
            "40",
            "--seed",
            "11",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return [json.loads(line) for line in path.read_text().splitlines()]


def _append_clock_ticks(path: Path, ts: float) -> None:
    """One harmless event per partition at the end time, so every partition's clock gets there."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < PARTITIONS:
        key = f"clock-{i}"
        found.setdefault((murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS, key)
        i += 1
    with path.open("a") as out:
        for partition, key in sorted(found.items()):
            tick = {"event_id": f"tick-{partition}", "type": "page_view", "ts": ts, "customer_id": key}
            out.write(json.dumps({**tick, "channel": "web"}) + "\n")


def _replay(history: Path) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "replay", str(history), "--journeys", str(JOURNEYS), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return [line for line in lines if "summary" not in line]


def _comparable(commands: list[dict]) -> list[tuple]:
    return sorted(
        (
            c["action_id"],
            c["customer_id"],
            c["action"],
            round(c["issued_at"], 3),
            json.dumps(c["payload"], sort_keys=True),
        )
        for c in commands
    )
