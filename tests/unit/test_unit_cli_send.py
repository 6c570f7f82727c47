"""``orchestrator send``'s line check: what the worker's ingest would dead-letter is refused
before it is sent, with the same reason; what it would take goes out as msgpack."""

from __future__ import annotations

import json
import time
from typing import Any

import msgpack
import pytest

from orchestrator.cli.send import _Check, _prepare
from orchestrator.errors import CliError
from orchestrator.ingest import Limits, Rejection, ingest
from orchestrator.topics import TopicNames

CHECK = _Check("events.web", TopicNames(), Limits())


def line(**fields: Any) -> bytes:
    doc = {"event_id": "e-1", "type": "search", "ts": time.time(), "customer_id": "c-1"} | fields
    return json.dumps(doc).encode()


def nested(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        doc = {"a": doc}
    return doc


def test_a_good_line_goes_out_as_msgpack_keyed_by_its_customer() -> None:
    key, value = _prepare(line(properties={"query": "tent"}), CHECK)

    assert key is not None
    assert msgpack.unpackb(value)["properties"] == {"query": "tent"}


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        pytest.param(line(ts=time.time() + 3600), "future_timestamp: ts ", id="an hour ahead"),
        pytest.param(line(properties={"p": "x" * 70_000}), "too_large: ", id="70 KB"),
        pytest.param(line(properties=nested(9)), "too_deep: nested deeper than 8 levels", id="10 levels"),
        pytest.param(line(ts=915148800), "invalid: ts 915148800.0 is before 2000", id="1999"),
        pytest.param(line(ts="noon"), "invalid: ts: ", id="not a time"),
        pytest.param(
            line()[:-1] + b', "properties": {"v": ' + str(2**70).encode() + b"}}",
            "not valid JSON: integer 11805916207174113034... out of 64-bit range",
            id="integer beyond 64 bits",
        ),
        pytest.param(
            line(properties={"v": "\ud800"}),
            "invalid: properties.v: invalid unicode: lone surrogate",
            id="lone surrogate",
        ),
        pytest.param(b"\xff{}", "not valid JSON: ", id="not UTF-8"),
        pytest.param(b"[1]", "each line must be a JSON object", id="an array"),
    ],
)
def test_a_line_the_worker_would_dead_letter_is_refused_with_its_reason(text: bytes, refusal: str) -> None:
    with pytest.raises(CliError) as refused:
        _prepare(text, CHECK)

    assert str(refused.value).startswith(refusal)


def test_a_lone_surrogate_without_the_check_is_still_one_line() -> None:
    with pytest.raises(CliError, match="cannot be encoded as msgpack: "):
        _prepare(line(properties={"v": "\ud800"}), None)


def test_a_time_within_the_workers_allowed_skew_is_sent() -> None:
    _prepare(line(ts=time.time() + 100), CHECK)


def test_the_check_uses_the_limits_it_is_given() -> None:
    strict = _Check("events.web", TopicNames(), Limits(max_future_skew_s=10))

    with pytest.raises(CliError, match="future_timestamp"):
        _prepare(line(ts=time.time() + 100), strict)


def test_without_the_check_a_line_is_only_read_and_encoded() -> None:
    _, value = _prepare(line(ts=915148800), None)

    assert msgpack.unpackb(value)["ts"] == 915148800


def test_a_line_is_read_without_its_line_end_so_an_error_is_where_the_worker_says() -> None:
    broken = b'{"event_id":"x1","type":"page_view",'
    worker = ingest(
        broken, topic="events.web", headers=[], received_at=0.0, now=0.0, topics=TopicNames(), limits=Limits()
    )
    assert isinstance(worker, Rejection)
    with pytest.raises(CliError) as refused:
        _prepare(broken + b"\r\n", CHECK)
    assert str(refused.value) == worker.detail
