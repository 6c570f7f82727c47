"""The worker's web port: Prometheus metrics that promtool accepts, and readiness."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.discovery import ChannelWatch
from agents.rebalance_watchdog import EXIT_STUCK
from orchestrator.kafka.clients import ensure_topics
from orchestrator.topics import TopicNames
from tests.integration.conftest import BOOTSTRAP, REDIS_URL
from tests.integration.harness import WorkerProcess, cli_env, event, free_port, listening_on


def test_metrics_pass_promtool_and_count_what_happened(worker: WorkerProcess) -> None:
    worker.publish("web", event("m-1", "purchase", "mia", product="sku-1", value=10))
    worker.commands(1, customer="mia")

    status, body = worker.http("/metrics")

    assert status == 200
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert check.returncode == 0, check.stderr.decode() + check.stdout.decode()
    text = body.decode()
    for name in (
        "orchestrator_events_consumed_total",
        "orchestrator_events_rejected_total",
        "orchestrator_commands_emitted_total",
        "orchestrator_event_to_command_seconds_bucket",
        "orchestrator_customers",
        "process_resident_memory_bytes",
    ):
        assert name in text, name
    assert "mia" not in text, "customer ids never appear in metrics"
    assert worker.metric("orchestrator_events_consumed_total", channel="web", type="purchase") == 1
    assert worker.metric("orchestrator_commands_emitted_total", channel="email", action="upsell") == 1
    assert worker.metric("orchestrator_event_to_command_seconds_count") >= 1


def test_ready_answers_200_once_the_worker_can_process(worker: WorkerProcess) -> None:
    status, body = worker.http("/ready")

    assert (status, body) == (200, b'{"ready":true}')


def test_the_web_port_listens_on_orch_web_host_only(worker: WorkerProcess) -> None:
    """ORCH_WEB_HOST (127.0.0.1 by default) is where the worker listens, not every interface."""
    assert listening_on(worker.web_port) == {"127.0.0.1"}


def test_a_new_channel_topic_is_picked_up_without_a_restart(worker: WorkerProcess) -> None:
    worker.publish("kiosk", event("n-1", "product_view", "nina", product="sku-kiosk"))

    [command] = worker.commands(1, customer="nina", timeout=60)

    assert command["payload"]["product"] == "sku-kiosk"
    assert "on kiosk" in command["reason"]


def test_events_sent_while_new_channels_are_being_subscribed_are_all_consumed(worker: WorkerProcess) -> None:
    """Faust drops records fetched during the rebalance that subscribes a new topic unless
    agents/fetch_guard.py seeks back (a batch cut short, or a partition with no committed
    offset yet): events trickle into three new topics before, during and after it."""
    channels = ("booth", "stall", "popup")
    sent = 0
    deadline = time.monotonic() + 12  # discovery (a few seconds) plus the rebalance fall inside
    while time.monotonic() < deadline:
        for channel in channels:
            worker.publish(
                channel, *(event(f"{channel}-{sent + i}", "page_view", f"{channel}-{sent + i}") for i in range(4))
            )
        sent += 4
        time.sleep(0.2)

    until = time.monotonic() + 60
    consumed = {channel: 0.0 for channel in channels}
    while time.monotonic() < until:
        consumed = {
            c: worker.metric("orchestrator_events_consumed_total", channel=c, type="page_view") for c in channels
        }
        if all(count >= sent for count in consumed.values()):
            break
        time.sleep(0.5)
    assert consumed == {channel: sent for channel in channels}, f"{sent} sent to each channel"


def test_a_worker_whose_rebalance_outlasts_the_limit_exits_to_be_restarted(prefix: str, tmp_path: Path) -> None:
    """A real Faust hang cannot be set off on demand, so a limit shorter than assigning
    partitions ever takes (tens of milliseconds: tables are opened) stands in for one."""
    stuck = WorkerProcess(
        prefix=f"{prefix}stuck.",  # a group of its own: the module's worker is not rebalanced
        bootstrap=BOOTSTRAP,
        redis_url=REDIS_URL,
        web_port=free_port(),
        data_dir=tmp_path,
        ORCH_REBALANCE_STUCK_S="0.005",
    )
    stuck.launch()

    code = stuck.wait_exit(timeout=90)

    assert code == EXIT_STUCK, stuck.log_tail()
    assert "rebalance stuck: Faust's" in stuck.log_tail(200)


@pytest.mark.filterwarnings(r"ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")
def test_topic_discovery_says_when_kafka_answers_again(
    refused_sockets_collected: None, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The check that found Kafka unreachable (a closed port, then the real broker's address)
    says once that it works again and finds the topics it missed meanwhile."""
    names = TopicNames(prefix)
    ensure_topics(BOOTSTRAP, [names.events("recovered")], 1)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        watch = ChannelWatch(f"127.0.0.1:{closed.getsockname()[1]}", re.compile(names.events_pattern), timeout_ms=300)
        with caplog.at_level(logging.INFO, logger="agents.discovery"):
            missed = asyncio.run(watch.new_topics(set()))
            watch.bootstrap = BOOTSTRAP
            found = asyncio.run(watch.new_topics(set()))
            again = asyncio.run(watch.new_topics(found))

    assert (missed, again) == (set(), set())
    assert names.events("recovered") in found
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "works again" in caplog.records[1].getMessage()


def test_a_web_port_already_taken_gives_one_line_naming_it_and_the_setting(prefix: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = cli_env(f"{prefix}taken.", BOOTSTRAP, REDIS_URL, ORCH_WEB_PORT=str(port), ORCH_DATA_DIR=str(tmp_path))
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", "worker"], capture_output=True, text=True, env=env, timeout=90
        )

    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"orchestrator: error: 127.0.0.1:{port} is taken")
    assert "ORCH_WEB_PORT" in result.stderr


def test_a_second_worker_on_a_data_folder_in_use_gives_one_line_naming_it(worker: WorkerProcess) -> None:
    env = worker.env | {"ORCH_WEB_PORT": str(free_port())}
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "worker"], capture_output=True, text=True, env=env, timeout=90
    )

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"orchestrator: error: {worker.env['ORCH_DATA_DIR']} is in use by another worker")
    assert "ORCH_DATA_DIR" in result.stderr
    assert worker.http("/ready")[0] == 200  # the first one never noticed
