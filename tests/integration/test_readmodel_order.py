"""The read model keeps the newest profile when two workers' writes cross (real Redis).

During a hand-over the worker giving a partition up may land its last batch after the
new owner has written a newer profile of the same customer. Each write carries the
offset of the record it follows in the customer's partition, and Redis refuses one older
than the profile's last write or delete. Two writers stand for the two workers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import REGISTRY

from orchestrator.core.decide import decide
from orchestrator.core.event import Event
from orchestrator.core.state import CustomerState
from orchestrator.readmodel import (
    ORDER_WINDOW_S,
    ReadModelWriter,
    alias_key,
    alias_tokens,
    offset_key,
    profile_key,
)
from tests.integration.conftest import REDIS_URL

T0 = 1_800_000_000.0


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        client.close()


def browsed(key: str, pages: int) -> CustomerState:
    """A customer who viewed ``pages`` pages, with an e-mail address."""
    state = None
    for i in range(pages):
        event = Event(
            event_id=f"{key}-{i}",
            type="page_view",
            ts=T0 + i,
            customer_key=key,
            channel="web",
            received_at=T0 + i,
            customer_id=key,
            identifiers={"email": f"{key}@example.com"},
        )
        state = decide(state, event, T0 + i).state
    assert state is not None
    return state


def write(prefix: str, *changes: tuple[str, CustomerState | str, int]) -> None:
    """Each change flushed by a writer of its own, in the order given: ("stage", state,
    offset), or ("forget", customer key, offset), which removes its aliases as an erasure does."""

    async def run() -> None:
        for kind, what, offset in changes:
            writer = ReadModelWriter(REDIS_URL, prefix)
            if kind == "stage":
                assert isinstance(what, CustomerState)
                writer.stage(what, T0, offset)
            else:
                assert kind == "forget" and isinstance(what, str)
                writer.forget([what], alias_tokens(browsed(what, 1)), offset)
            await writer.aclose()

    asyncio.run(run())


def events_in_redis(client: redis.Redis, prefix: str, key: str) -> int | None:
    raw = client.get(profile_key(prefix, key))
    return None if raw is None else int(json.loads(raw)["events"])


def refused() -> float:
    return REGISTRY.get_sample_value("orchestrator_readmodel_refused_total") or 0.0


def test_a_late_batch_from_before_a_hand_over_does_not_replace_the_newer_profile(
    client: redis.Redis, prefix: str
) -> None:
    before = refused()
    write(prefix, ("stage", browsed("c-late", 3), 12), ("stage", browsed("c-late", 2), 11))
    assert events_in_redis(client, prefix, "c-late") == 3
    assert refused() == before + 1


def test_a_record_read_again_after_a_hand_over_is_written_again(client: redis.Redis, prefix: str) -> None:
    write(prefix, ("stage", browsed("c-again", 2), 11), ("stage", browsed("c-again", 3), 11))
    assert events_in_redis(client, prefix, "c-again") == 3


def test_a_late_write_does_not_bring_back_a_removed_profile_or_its_aliases(client: redis.Redis, prefix: str) -> None:
    state = browsed("c-gone", 2)
    write(prefix, ("stage", state, 4), ("forget", "c-gone", 6), ("stage", state, 5))
    assert client.get(profile_key(prefix, "c-gone")) is None
    assert client.get(alias_key(prefix, "email:c-gone@example.com")) is None


def test_a_customer_who_comes_back_after_removal_is_written(client: redis.Redis, prefix: str) -> None:
    write(prefix, ("forget", "c-back", 6), ("stage", browsed("c-back", 1), 7))
    assert events_in_redis(client, prefix, "c-back") == 1
    assert client.get(alias_key(prefix, "email:c-back@example.com")) == b"c-back"


def test_a_late_removal_does_not_remove_a_newer_profile(client: redis.Redis, prefix: str) -> None:
    write(prefix, ("stage", browsed("c-stays", 2), 9), ("forget", "c-stays", 8))
    assert events_in_redis(client, prefix, "c-stays") == 2


def test_the_order_is_remembered_for_a_window_only(client: redis.Redis, prefix: str) -> None:
    """So a deployment whose topics were recreated, offsets starting at 0 again, writes again."""
    write(prefix, ("stage", browsed("c-window", 3), 500))
    left_ms = client.pttl(offset_key(prefix, "c-window"))
    assert 0 < left_ms <= ORDER_WINDOW_S * 1000
    client.delete(offset_key(prefix, "c-window"))  # as the window's end does
    write(prefix, ("stage", browsed("c-window", 1), 0))
    assert events_in_redis(client, prefix, "c-window") == 1
