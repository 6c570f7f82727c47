"""A migration rule through the real broker: a customer mid-wait on v1 moves to v2 when it is published."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import running_worker
from tests.integration.harness import WorkerProcess, cli_env, event

V1 = """
id: reminder
version: 1
description: Browsed - a reminder a little later
trigger:
  event: product_view
reentry: always
steps:
  - id: a_little_later
    wait: 8s
  - id: remind
    action:
      channel: email
      action: reminder_v1
      payload:
        product: '{{ trigger.properties.product }}'
"""

V2 = """
id: reminder
version: 2
description: Browsed - a reminder a little later, now with an offer
trigger:
  event: product_view
reentry: always
migrate:
  from: 1
  steps:
    a_little_later: wait_for_it      # same length: the wait keeps its due time
steps:
  - id: wait_for_it
    wait: 8s
  - id: offer
    action:
      channel: email
      action: reminder_v2
      payload:
        product: '{{ trigger.properties.product }}'
        offer: ten_percent
"""


@pytest.fixture(scope="module")
def journey_worker(prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker that runs journeys only (no built-in rules), with a fast timer."""
    with running_worker(prefix, tmp_path_factory.mktemp("mworker"), ORCH_RULES="", ORCH_TIMER_INTERVAL_S="0.1") as w:
        yield w


def cli(worker: WorkerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "journeys", *args],
        env=cli_env(worker.prefix, worker.bootstrap, worker.redis_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def publish(worker: WorkerProcess, folder: Path, **files: str) -> None:
    """Write the files into ``folder`` and publish it; wait until the worker holds every version."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    result = cli(worker, "publish", str(folder))
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 20
    while worker.metric("orchestrator_journeys_loaded") < len(files):
        assert time.monotonic() < deadline, "the worker never loaded the published versions"
        time.sleep(0.2)


def test_a_customer_mid_wait_moves_to_the_published_version_and_its_wait_fires_once_with_its_action(
    journey_worker: WorkerProcess, tmp_path: Path
) -> None:
    publish(journey_worker, tmp_path / "v1", reminder=V1)
    entered_at = time.time()
    journey_worker.publish("web", event("m-1", "product_view", "mia", product="sku-lamp"))
    deadline = time.monotonic() + 20
    while journey_worker.metric("orchestrator_journey_entries_total", journey="reminder", version="1") < 1:
        assert time.monotonic() < deadline, "mia never entered version 1"
        time.sleep(0.1)

    # Both files in one folder: v1 is "same", v2 is new, and v2's old steps are checked against v1.
    publish(journey_worker, tmp_path / "v2", reminder=V1, reminder_v2=V2)
    assert time.time() < entered_at + 8.0, "too slow: the wait was over before v2 was published"

    commands = journey_worker.commands(2, customer="mia", timeout=20)  # a second one would fail

    assert [c["action"] for c in commands] == ["reminder_v2"], "the wait fires once, with v2's action"
    [command] = commands
    assert command["payload"] == {"product": "sku-lamp", "offer": "ten_percent"}  # v1's trigger carries over
    assert "journey reminder v2" in command["reason"]
    assert command["issued_at"] >= entered_at + 8.0, "the move keeps the wait's due time"
    moved = {"journey": "reminder", "version": "1", "reason": "migrated_to_v2"}
    assert journey_worker.metric("orchestrator_journey_exits_total", **moved) == 1
    assert journey_worker.metric("orchestrator_journey_entries_total", journey="reminder", version="2") == 0


def test_journeys_list_shows_which_versions_migrate_from_which(journey_worker: WorkerProcess) -> None:
    text = cli(journey_worker, "list")
    assert text.returncode == 0, text.stderr
    assert "migrates customers in flight from v1: a_little_later -> wait_for_it; other steps stay" in text.stdout
    assert "customers in flight here move to v2" in text.stdout

    rows = [json.loads(line) for line in cli(journey_worker, "list", "--json").stdout.splitlines()]
    by_version = {row["version"]: row for row in rows if row["id"] == "reminder"}
    assert by_version[2]["migrate"] == [{"from": [1], "steps": {"a_little_later": "wait_for_it"}, "otherwise": "stay"}]
    assert by_version[1]["migrates_to"] == [2] and by_version[2]["migrates_to"] == []


def test_publish_refuses_a_rule_whose_old_step_no_published_version_has(
    journey_worker: WorkerProcess, tmp_path: Path
) -> None:
    v3 = V2.replace("version: 2", "version: 3").replace("a_little_later: wait_for_it", "a_litle_later: wait_for_it")
    folder = tmp_path / "v3"
    folder.mkdir()
    text = v3.replace("from: 1", "from: [1, 2]")
    (folder / "reminder.yaml").write_text(text)
    line = next(i for i, content in enumerate(text.splitlines(), 1) if "a_litle_later" in content)

    result = cli(journey_worker, "publish", str(folder))

    assert result.returncode != 0
    expected = f"reminder.yaml:{line}: migrate.steps.a_litle_later: no step 'a_litle_later' in version 1 or 2"
    assert expected in result.stderr
    assert "nothing was published" in result.stderr
