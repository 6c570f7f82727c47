"""Integration fixtures: the real broker, the real Redis, real worker processes.

Nothing here skips. When Kafka or Redis is missing the tests fail with a line
that says so, because a green run without them would prove nothing.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from orchestrator.errors import CliError
from orchestrator.kafka.cleanup import remove_prefix
from orchestrator.kafka.clients import list_topics
from tests.integration.harness import WorkerProcess, free_port

BOOTSTRAP = os.environ.get("ORCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("ORCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session", autouse=True)
def real_stack() -> None:
    """Fail (never skip) when the stack is down: run `make up`, or just `make test`."""
    try:
        list_topics(BOOTSTRAP)
    except CliError as exc:
        pytest.fail(f"Kafka is required for integration tests: {exc}", pytrace=False)
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required for integration tests at {REDIS_URL}: {exc}; run 'make up'", pytrace=False)
    finally:
        client.close()


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    """A topic prefix of its own per module, so runs and modules never see each other's data.

    Afterwards its topics, consumer group and Redis keys are deleted: a local broker that
    kept every run's topics (thousands, after a few runs) gets slow enough to set off
    Faust's rebalance hangs in the demo. Failing to clean up is only logged."""
    name = f"it-{uuid.uuid4().hex[:8]}."
    yield name
    forget_prefix(name)


def forget_prefix(name: str) -> None:
    """Delete the topics, consumer group and Redis keys of prefix ``name``; failing is only logged."""
    try:
        remove_prefix(BOOTSTRAP, REDIS_URL, name)
    except Exception as exc:  # never turn a test's result into a cleanup error
        logging.getLogger(__name__).warning("could not clean up %r: %r", name, exc)


@contextmanager
def running_worker(prefix: str, data_dir: Path, **env: str) -> Iterator[WorkerProcess]:
    """A started worker with its own data folder and web port; ``env`` adds ORCH_* settings."""
    proc = WorkerProcess(
        prefix=prefix, bootstrap=BOOTSTRAP, redis_url=REDIS_URL, web_port=free_port(), data_dir=data_dir, **env
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def worker(prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    with running_worker(prefix, tmp_path_factory.mktemp("worker")) as proc:
        yield proc
