"""Raw Kafka record -> validated :class:`Event`, or a :class:`Rejection` with a reason.

Pure: the agent supplies the bytes, headers, topic and clock. Every failure is a
value, never an exception, so one bad record can never stall a partition.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orchestrator.core.event import Event, customer_key
from orchestrator.identity.tokens import PLAIN, Hasher
from orchestrator.topics import TopicNames
from schemas.codec import DecodeError, content_type_of, decode_payload
from schemas.events import EARLIEST_TS, LATEST_TS, ChannelEvent


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 64 * 1024
    max_depth: int = 8
    max_future_skew_s: float = 300.0


@dataclass(frozen=True)
class Rejection:
    """Why a record went to the dead-letter topic. ``reason`` is a bounded metric label."""

    reason: str
    detail: str


def ingest(
    payload: bytes | None,
    *,
    topic: str,
    headers: Any,
    received_at: float,
    now: float,
    topics: TopicNames,
    limits: Limits,
    hasher: Hasher = PLAIN,
) -> Event | Rejection:
    """Decode, bound, validate and normalise one inbound record."""
    if not payload:
        return Rejection("empty", "the message has no value")
    if too_large := size_problem(payload, limits):
        return Rejection("too_large", too_large)
    try:
        doc = decode_payload(payload, content_type_of(headers))
    except DecodeError as exc:
        reason = "too_deep" if "deep" in str(exc) else "undecodable"
        return Rejection(reason, str(exc))
    if not isinstance(doc, dict):
        return Rejection("not_an_object", f"expected a map, got {type(doc).__name__}")
    if depth_of(doc, limits.max_depth) > limits.max_depth:
        return Rejection("too_deep", f"nested deeper than {limits.max_depth} levels")
    if problem := content_problem(doc):
        return Rejection("invalid", problem)
    try:
        event = ChannelEvent.model_validate(doc)
    except ValidationError as exc:
        return Rejection("invalid", describe(exc))
    return _normalise(event, topic, received_at, now, topics, limits, hasher)


def _normalise(
    event: ChannelEvent, topic: str, received_at: float, now: float, topics: TopicNames, limits: Limits, hasher: Hasher
) -> Event | Rejection:
    if event.ts > now + limits.max_future_skew_s:
        return Rejection("future_timestamp", f"ts {event.ts:.0f} is {event.ts - now:.0f}s in the future")
    if problem := timestamp_problem(event.ts):
        return Rejection("invalid", problem)
    channel = event.channel or topics.channel_of(topic)
    if not channel:
        return Rejection("invalid", f"no channel given and none in topic name {topic!r}")
    return to_event(event, channel, received_at, hasher)


def timestamp_problem(ts: float) -> str | None:
    """What is wrong with an event's time in any run, live or replayed: a unit mistake. (The
    stream also refuses times ahead of its clock; a replay has no clock to compare with.)"""
    if ts < EARLIEST_TS:
        return f"ts {ts!r} is before 2000; epoch seconds expected"
    if ts >= LATEST_TS:
        return f"ts {ts!r} is after the year 3000; epoch seconds expected, not milliseconds"
    return None


def size_problem(line: bytes, limits: Limits) -> str | None:
    """A record (or a replayed line) too large to take in: checked first, live and in replay,
    so a huge one is never parsed, and a replay says it as the dead letter does."""
    if len(line) > limits.max_message_bytes:
        return f"{len(line)} bytes > limit {limits.max_message_bytes}"
    return None


def bounds_problem(line: bytes, event: ChannelEvent, limits: Limits) -> str | None:
    """The stream's other bounds for a replayed line (after :func:`size_problem`): its nesting and its time."""
    if depth_of(event.properties, limits.max_depth - 1) > limits.max_depth - 1:  # the event itself is one level
        return f"nested deeper than {limits.max_depth} levels"
    return content_problem(_content(event)) or timestamp_problem(event.ts)


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def content_problem(doc: dict[str, Any]) -> str | None:
    """What no event may hold, live or replayed: a number that is not finite (NaN, Infinity:
    JSON has none, and a template would pass it on into a command) or a lone surrogate (it
    has no UTF-8, so the event could not travel on to the decide agent). Checked before the
    contract, whose own message for a surrogate in a short text says less."""
    return _value_problem(doc, "") if _unsendable_inside(doc) else None


def _unsendable_inside(doc: Any) -> bool:
    """Whether :func:`_value_problem` will find something: a tight walk (a tenth of its cost)
    for the run of good events, which it sees on every replayed line."""
    stack = [doc]
    pop, extend, isfinite = stack.pop, stack.extend, math.isfinite
    while stack:
        value = pop()
        kind = type(value)
        if kind is str:
            if not value.isascii() and LONE_SURROGATE.search(value):
                return True
        elif kind is float:
            if not isfinite(value):
                return True
        elif kind is dict:
            extend(value)  # the names too
            extend(value.values())
        elif kind is list:
            extend(value)
    return False


def _content(event: ChannelEvent) -> dict[str, Any]:
    """The fields of a valid event that may hold anything: all :func:`content_problem` need see."""
    texts = {"event_id": event.event_id, "customer_id": event.customer_id, "action_id": event.action_id}
    return texts | {"identifiers": event.identifiers, "properties": event.properties}


def _value_problem(value: Any, where: str) -> str | None:
    """The first non-finite number or lone surrogate in ``value``, with where it is."""
    kind = type(value)
    if kind is str:
        return f"{where}: invalid unicode: lone surrogate" if has_lone_surrogate(value) else None
    if kind is float:
        return None if math.isfinite(value) else f"{where}: {json.dumps(value)} is not a finite number"
    items = value.items() if kind is dict else enumerate(value) if kind is list else ()
    for key, item in items:
        if type(key) is str and has_lone_surrogate(key):  # named by its escapes: the name cannot be printed
            return f"{_at(where, ascii(key))}: invalid unicode: lone surrogate"
        if problem := _value_problem(item, _at(where, key)):
            return problem
    return None


def _at(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def has_lone_surrogate(text: str) -> bool:
    """Half of a character that no UTF-8 can carry: neither msgpack nor JSON can send it."""
    return not text.isascii() and LONE_SURROGATE.search(text) is not None


def to_event(event: ChannelEvent, channel: str, received_at: float, hasher: Hasher = PLAIN) -> Event:
    """The contract's event as the core sees it; used by the stream and by replay.

    Identifiers are normalised and, for the configured kinds, hashed here, at
    the edge, so nothing downstream ever sees a raw email or phone number."""
    identifiers = hasher.identifiers(dict(event.identifiers or {}))
    return Event(
        event_id=event.event_id,
        type=event.type,
        ts=event.ts,
        customer_key=customer_key(event.customer_id, identifiers),
        channel=event.channel or channel,
        received_at=received_at,
        customer_id=event.customer_id,
        identifiers=identifiers,
        properties=dict(event.properties),
        action_id=event.action_id,
    )


def depth_of(doc: Any, limit: int) -> int:
    """Nesting depth of maps and lists, scanning no further than ``limit + 1`` levels."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
        if depth > limit:
            return depth
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def describe(exc: ValidationError, most: int = 3) -> str:
    """Pydantic's errors as one line a channel team can act on."""
    parts = []
    for err in exc.errors()[:most]:
        where = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - most
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
