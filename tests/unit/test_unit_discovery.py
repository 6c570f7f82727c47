"""The topic-discovery check against a Kafka address where nothing listens: a real closed port.

An exception out of the check's Faust timer ends the worker, so every worker died together
some 30 s into a broker restart; the check must say so once and go on."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from collections.abc import Iterator

import pytest
from kafka.errors import KafkaError

from agents.discovery import ChannelWatch
from orchestrator.errors import CliError
from orchestrator.kafka.clients import AdminClient, list_topics
from orchestrator.outage import Outage


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: a connection to it is refused, and nothing else takes it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.mark.filterwarnings(r"ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")
def test_an_unreachable_broker_finds_nothing_new_and_warns_once(
    refused_sockets_collected: None, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    watch = ChannelWatch(f"127.0.0.1:{closed_port}", re.compile(r"^events\."), timeout_ms=300)
    with caplog.at_level(logging.INFO, logger="agents.discovery"):
        found = [asyncio.run(watch.new_topics({"events.web"})) for _ in range(3)]
    assert found == [set(), set(), set()]
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert f"cannot reach Kafka at 127.0.0.1:{closed_port}" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is None  # one line, no traceback


@pytest.mark.filterwarnings(r"ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")
def test_an_unreachable_broker_leaves_no_network_thread_behind(
    refused_sockets_collected: None, closed_port: int
) -> None:
    """kafka-python 3.0 starts a client's network thread before it looks for a broker; a
    constructor that found none left it running for good, one per check of an outage."""
    bootstrap = f"127.0.0.1:{closed_port}"
    before = set(threading.enumerate())
    for _ in range(3):
        with pytest.raises(CliError, match="cannot reach Kafka"):
            list_topics(bootstrap, 300)
    with pytest.raises(KafkaError):
        AdminClient(bootstrap_servers=[bootstrap], bootstrap_timeout_ms=300)
    assert [t.name for t in set(threading.enumerate()) - before] == []


def test_an_outage_is_told_when_it_begins_and_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage("the check", logging.getLogger("test.outage"))
    with caplog.at_level(logging.INFO, logger="test.outage"):
        outage.succeeded()
        outage.failed(OSError("refused"))
        outage.failed(OSError("refused again"))
        outage.succeeded()
        outage.succeeded()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "the check fails: refused; trying again quietly until it works"),
        ("INFO", "the check works again after 0 s"),
    ]
