"""Bad input goes to the dead-letter topic with a reason, and nothing around it is lost."""

from __future__ import annotations

import json
import time

import msgpack

from orchestrator.kafka.tail import follow
from tests.integration.harness import WorkerProcess, event

GARBAGE = b"\xc1\xff\x00 definitely not msgpack"
WRONG_TYPES = msgpack.packb({"event_id": 42, "type": "search", "ts": "yesterday", "customer_id": ["x"]})
OVERSIZE = msgpack.packb(event("big-1", "page_view", "gus", blob="x" * 70_000))
MISSING = json.dumps({"type": "page_view", "customer_id": "gus"}).encode()
DEEP = json.dumps(event("deep-1", "page_view", "gus", nest=[[[[[[[[[["too deep"]]]]]]]]]])).encode()
NOT_A_MAP = msgpack.packb(["event_id", "type"])
NOT_A_NUMBER = json.dumps(event("nan-1", "search", "gus", price=float("nan"))).encode()  # json writes NaN
INFINITE = msgpack.packb(event("inf-1", "search", "gus", price=float("inf")))
LONE_SURROGATE = json.dumps(event("sur-1", "search", "gus", query="\ud800")).encode()  # no UTF-8 for it
BAD = [GARBAGE, WRONG_TYPES, OVERSIZE, MISSING, DEEP, NOT_A_MAP, NOT_A_NUMBER, INFINITE, LONE_SURROGATE]

EXPECTED_REASONS = ["undecodable", "invalid", "too_large", "invalid", "too_deep", "not_an_object"] + ["invalid"] * 3


def test_each_bad_record_lands_in_the_dlq_with_its_reason_and_the_good_ones_are_processed(
    worker: WorkerProcess,
) -> None:
    worker.publish("web", event("g-1", "search", "gus", query="before the garbage"))
    for payload in BAD:
        worker.publish("web", raw=payload, key="gus")  # same partition: order is kept
    worker.publish("web", event("g-2", "search", "gus", query="after the garbage"))

    dead = _dead_letters(worker, len(BAD))
    commands = worker.commands(2, customer="gus")

    assert [_header(r.headers, "dlq.reason") for r in dead] == EXPECTED_REASONS
    assert [r.value for r in dead] == BAD
    assert {_header(r.headers, "dlq.topic") for r in dead} == {worker.names.events("web")}
    assert all(_header(r.headers, "dlq.offset").isdigit() for r in dead)
    assert all(_header(r.headers, "dlq.partition").isdigit() for r in dead)
    assert "event_id" in _header(dead[3].headers, "dlq.detail")
    assert [_header(r.headers, "dlq.detail") for r in dead[6:]] == [
        "properties.price: NaN is not a finite number",
        "properties.price: Infinity is not a finite number",
        "properties.query: invalid unicode: lone surrogate",
    ]
    assert [c["payload"]["query"] for c in commands] == ["before the garbage", "after the garbage"]
    assert worker.metric("orchestrator_events_rejected_total", reason="invalid") == 5
    assert worker.metric("orchestrator_events_rejected_total", reason="too_large") == 1


def test_an_event_from_the_far_future_is_refused(worker: WorkerProcess) -> None:
    future = event("f-1", "search", "fay", query="time travel")
    future["ts"] += 10 * 365 * 86400
    worker.publish("web", future)
    worker.publish("web", event("f-2", "search", "fay", query="tents"))

    [command] = worker.commands(1, customer="fay")

    assert command["payload"]["query"] == "tents"
    assert worker.metric("orchestrator_events_rejected_total", reason="future_timestamp") == 1


def test_a_record_near_the_broker_s_limit_is_dead_lettered_cut_to_fit_and_the_agent_goes_on(
    worker: WorkerProcess,
) -> None:
    """The broker takes about 1 MiB, the worker's producer sends up to 1,000,000 bytes: the
    whole copy with its dlq.* headers could not be sent, which crashed the agent and lost it.
    So could a bad record whose key alone is near that size."""
    huge = b'{"event_id": "huge-1", "b": "' + b"x" * 1_040_000 + b'"}'
    before = worker.metric("orchestrator_events_rejected_total", reason="too_large")
    worker.publish("web", event("h-1", "search", "hal", query="before the huge one"))
    worker.publish("web", raw=huge, key="hal")
    worker.publish("web", raw=b"{not json", key="K" * 1_000_000)
    worker.publish("web", event("h-2", "search", "hal", query="after the huge one"))

    commands = worker.commands(2, customer="hal")
    letters = follow(worker.bootstrap, f"^{worker.names.dlq}$", from_beginning=True, deadline=time.monotonic() + 45)
    letter = next(r for r in letters if dict(r.headers).get("dlq.truncated") == b"true")
    keyed = next(r for r in letters if dict(r.headers).get("dlq.key_truncated") == b"true")

    assert [c["payload"]["query"] for c in commands] == ["before the huge one", "after the huge one"]
    assert (keyed.key, keyed.value, _header(keyed.headers, "dlq.key_size")) == (b"K" * 1024, b"{not json", "1000000")
    assert _header(letter.headers, "dlq.reason") == "too_large"
    assert _header(letter.headers, "dlq.size") == str(len(huge))
    assert letter.value is not None and 0 < len(letter.value) < 1_000_000 and huge.startswith(letter.value)
    assert worker.metric("orchestrator_events_rejected_total", reason="too_large") == before + 1


def _dead_letters(worker: WorkerProcess, count: int) -> list:
    """The first ``count`` distinct dead letters, by the offset they came from. Delivery is
    at least once: a rebalance before the commit reads records again, and their dead
    letters are written again (the headers let a reader of the DLQ drop repeats)."""
    wanted = count
    while True:
        records = worker.read(f"^{worker.names.dlq}$", count=wanted)
        seen: set[str] = set()
        distinct = []
        for record in records:  # the first letter for each offset, in the order they came
            offset = _header(record.headers, "dlq.offset")
            if offset not in seen:
                seen.add(offset)
                distinct.append(record)
        if len(distinct) >= count or len(records) < wanted:
            return distinct[:count]
        wanted += count - len(distinct)


def _header(headers: list[tuple[str, bytes]], name: str) -> str:
    return next(v.decode() for k, v in headers if k == name)
