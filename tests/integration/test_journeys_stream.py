"""Journeys through the real broker: live publishing, short waits, goals, restarts, versions."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import running_worker
from tests.integration.harness import WorkerProcess, cli_env, event

WAIT_JOURNEY = """
id: nudge
version: {version}
description: Browsed - a nudge a little later
trigger:
  event: product_view
goal:
  event: purchase
reentry: always
steps:
  - wait: {wait}
  - action:
      channel: email
      action: nudge
      payload:
        product: '{{{{ trigger.properties.product }}}}'
        version: {version}
"""


@pytest.fixture(scope="module")
def journey_worker(prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker that runs journeys only (no built-in rules), with a fast timer."""
    with running_worker(prefix, tmp_path_factory.mktemp("jworker"), ORCH_RULES="", ORCH_TIMER_INTERVAL_S="0.1") as w:
        yield w


def publish(worker: WorkerProcess, folder: Path, version: int, wait: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nudge.yaml").write_text(WAIT_JOURNEY.format(version=version, wait=wait))
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "journeys", "publish", str(folder)],
        env=cli_env(worker.prefix, worker.bootstrap, worker.redis_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    _wait_for_metric(worker, "orchestrator_journeys_loaded", version)


def _wait_for_metric(worker: WorkerProcess, name: str, at_least: float, timeout: float = 20, **labels: str) -> None:
    deadline = time.monotonic() + timeout
    while worker.metric(name, **labels) < at_least:
        assert time.monotonic() < deadline, f"{name}{labels} never reached {at_least}"
        time.sleep(0.2)


def test_a_published_journey_waits_then_acts_without_a_worker_restart(
    journey_worker: WorkerProcess, tmp_path: Path
) -> None:
    publish(journey_worker, tmp_path / "v1", 1, "2s")
    sent_at = time.time()
    journey_worker.publish("web", event("j-1", "product_view", "jane", product="sku-lamp"))

    [command] = journey_worker.commands(1, customer="jane")

    assert command["action"] == "nudge" and command["journey"] == "nudge"
    assert command["payload"] == {"product": "sku-lamp", "version": 1}
    assert command["issued_at"] >= sent_at + 2.0, "not before the wait is over"
    assert journey_worker.metric("orchestrator_journey_entries_total", journey="nudge", version="1") >= 1


def test_a_goal_in_the_middle_of_a_wait_ends_the_journey_at_once(journey_worker: WorkerProcess) -> None:
    journey_worker.publish("web", event("g-1", "product_view", "gil", product="sku-tent"))
    journey_worker.publish("web", event("g-2", "purchase", "gil", product="sku-tent", value=10))
    journey_worker.publish("web", event("g-3", "product_view", "gil", product="sku-sock"))

    # Gil's only nudge is for the socks: the tent nudge was cancelled by the purchase.
    [command] = journey_worker.commands(1, customer="gil")

    assert command["payload"]["product"] == "sku-sock"
    assert (
        journey_worker.metric("orchestrator_journey_conversions_total", journey="nudge", version="1", when="in_journey")
        >= 1
    )


def test_a_worker_restarted_in_the_middle_of_a_wait_still_fires_it_exactly_once(
    journey_worker: WorkerProcess, tmp_path: Path
) -> None:
    publish(journey_worker, tmp_path / "v2", 2, "6s")
    journey_worker.publish("web", event("r-1", "product_view", "rex", product="sku-boot"))
    time.sleep(1.5)  # decided and waiting

    assert journey_worker.stop() == 0
    journey_worker.start()
    commands = journey_worker.commands(2, customer="rex", timeout=25)

    assert [c["payload"] for c in commands] == [{"product": "sku-boot", "version": 2}]


def test_customers_in_flight_finish_on_their_version_while_new_ones_get_the_new_one(
    journey_worker: WorkerProcess, tmp_path: Path
) -> None:
    publish(journey_worker, tmp_path / "v3", 3, "5s")
    journey_worker.publish("web", event("v-1", "product_view", "vera", product="sku-old"))
    time.sleep(1.0)
    publish(journey_worker, tmp_path / "v4", 4, "1s")
    journey_worker.publish("web", event("v-2", "product_view", "walt", product="sku-new"))

    [walt] = journey_worker.commands(1, customer="walt")
    [vera] = journey_worker.commands(1, customer="vera")

    assert walt["payload"] == {"product": "sku-new", "version": 4}
    assert vera["payload"] == {"product": "sku-old", "version": 3}


def test_a_worker_restarted_with_events_waiting_keeps_its_customers_in_their_journeys(
    journey_worker: WorkerProcess, tmp_path: Path
) -> None:
    """The journey is only on the catalogue topic: a worker that decided Ria's waiting event
    before reading the topic would take her out of the journey (version_removed)."""
    publish(journey_worker, tmp_path / "v5", 5, "20s")  # longer than the restart: sku-cap arrives mid-wait
    journey_worker.publish("web", event("k-1", "product_view", "ria", product="sku-hat"))
    time.sleep(1.5)  # decided and waiting

    assert journey_worker.stop() == 0
    journey_worker.publish("web", event("k-2", "product_view", "ria", product="sku-cap"))  # already in: no entry
    journey_worker.start()
    commands = journey_worker.commands(2, customer="ria", timeout=35)

    assert [c["payload"] for c in commands] == [{"product": "sku-hat", "version": 5}]
    assert (
        journey_worker.metric(
            "orchestrator_journey_exits_total", journey="nudge", version="5", reason="version_removed"
        )
        == 0
    )


def test_a_goal_reached_on_another_profile_ends_the_journey_when_the_two_merge(
    journey_worker: WorkerProcess, tmp_path: Path
) -> None:
    """Mia browses anonymously (her journey starts there), buys on her account, then logs in
    on the anonymous device: the merge ends the journey on the purchase, its goal, long before
    its wait would end."""
    publish(journey_worker, tmp_path / "v6", 6, "10m")
    view = event("m-1", "product_view", "", product="sku-mug")
    del view["customer_id"]
    view["identifiers"] = {"cookie": "ck-mia", "email": "mia@example.com"}
    journey_worker.publish("web", view)
    _wait_for_metric(journey_worker, "orchestrator_journey_entries_total", 1, journey="nudge", version="6")

    journey_worker.publish("web", event("m-2", "purchase", "mia", product="sku-mug", value=9))
    login = event("m-3", "identify", "mia") | {"identifiers": {"email": "mia@example.com"}}
    journey_worker.publish("web", login)  # after the purchase: same customer, same partition

    labels = {"journey": "nudge", "version": "6"}
    _wait_for_metric(journey_worker, "orchestrator_journey_exits_total", 1, 30, reason="goal", **labels)
    assert journey_worker.metric("orchestrator_journey_conversions_total", when="in_journey", **labels) == 1
