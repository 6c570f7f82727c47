"""The worker's consumer asks the broker to batch fetches (see agents/fetch_batching.py).

The app is built as ``orchestrator worker`` builds it, against the real broker; its
consumer is created but not started: what is checked is what aiokafka hands its fetcher.
That events still flow with the batching on is what every other stream test shows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator.app import create_app
from orchestrator.settings import Settings
from tests.integration.conftest import BOOTSTRAP


def fetch_config(monkeypatch: pytest.MonkeyPatch, prefix: str, data_dir: Path, **env: str) -> tuple[int, int]:
    """The fetch wait and minimum of the consumer the worker's app creates."""
    monkeypatch.setenv("ORCH_KAFKA_BOOTSTRAP", BOOTSTRAP)
    monkeypatch.setenv("ORCH_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("ORCH_DATA_DIR", str(data_dir))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app(Settings())
    thread = app.consumer._thread  # Faust's consumer thread, which creates the aiokafka consumer

    async def create() -> tuple[int, int]:  # aiokafka wants a running event loop
        consumer = thread._create_worker_consumer(app.transport)
        await consumer.stop()
        return consumer._fetch_max_wait_ms, consumer._fetch_min_bytes

    try:
        return asyncio.run(create())
    finally:  # Faust made event loops for the app and its consumer thread, never run: close them
        thread.thread_loop.close()
        app.loop.close()


def test_the_worker_consumer_waits_to_gather_a_batch(
    monkeypatch: pytest.MonkeyPatch, prefix: str, tmp_path: Path
) -> None:
    assert fetch_config(monkeypatch, prefix, tmp_path) == (25, 65536)


def test_the_batching_follows_the_settings(monkeypatch: pytest.MonkeyPatch, prefix: str, tmp_path: Path) -> None:
    assert fetch_config(monkeypatch, prefix, tmp_path, ORCH_FETCH_WAIT_MS="5", ORCH_FETCH_MIN_BYTES="1") == (5, 1)
