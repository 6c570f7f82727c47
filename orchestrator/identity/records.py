"""What a key of the customers table holds: a profile, a forward pointer, or a suppression;
and what an erased key leaves behind (:class:`Erased`, under a key of its own).

The identity graph lives in the customers table itself. A profile key holds the
customer's state; every other identifier of that customer holds a pointer to
it, so an event routed by any identifier finds the one profile in at most a few
hops. Pointers and suppressions start with ``0xc1``, a byte msgpack never
writes, so they can never be mistaken for a state record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgpack

from orchestrator.core.state import CustomerState

MARK = b"\xc1"
FORWARD = MARK + b"F"
FORWARD_KEEPING = MARK + b"f"  # a pointer that still keeps an outbox: msgpack [target, outbox]
SUPPRESSED = MARK + b"S"
ERASED = MARK + b"E"
# Before the digest in an erased key's marker key: a lone surrogate, which ingest refuses in a
# channel's text, so no customer's key can be one; as bytes (surrogateescape) it is 0xc1.
ERASED_KEY = "\udcc1E"
OUTBOX = "_outbox"  # stored beside the state's fields, which it can never be mistaken for


def is_profile(raw: bytes) -> bool:
    """Whether a stored value is a customer's profile, not a pointer or a mark: what
    ``orchestrator_customers`` counts."""
    return not raw.startswith(MARK)


@dataclass(frozen=True)
class Missing:
    """Nothing is known under this key: a new profile starts here."""


@dataclass(frozen=True)
class Sent:
    """What the decisions on one record sent: commands and follow-up events, as on the wire.

    Kept with the profile (see :mod:`agents.outbox`) under ``place``, where the record was
    read from, so that the same record read again after a crash sends them again."""

    place: str
    at: float  # wall clock of the decision: old entries are dropped
    commands: tuple[dict[str, Any], ...] = ()
    sends: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Profile:
    state: CustomerState
    outbox: tuple[Sent, ...] = ()


@dataclass(frozen=True)
class Forward:
    """This identifier belongs to the profile stored under ``target``.

    A profile merged into another keeps its outbox here: the records it decided just
    before the merge, and the merge's hand-over of its state, come back to this key."""

    target: str
    outbox: tuple[Sent, ...] = ()


@dataclass(frozen=True)
class Suppressed:
    """Erased with suppression: events with this identifier are dropped."""


@dataclass(frozen=True)
class Erased:
    """Nothing is stored under this key; it was erased at ``at``. Kept beside the key, under
    :func:`erased_key`, so that an event dated before the erasure, read after it, cannot bring
    the customer back: a channel event forwarded again after a restart, or a late batch."""

    at: float


Record = Missing | Forward | Suppressed | Profile | Erased


def erased_key(key: str) -> str:
    """Where the table remembers that ``key`` was erased: a digest of the key, not the key."""
    return ERASED_KEY + hashlib.sha256(key.encode()).hexdigest()[:32]


def erased_mark(at: float) -> bytes:
    """What :func:`erased_key` holds: the time of the erasure."""
    return ERASED + repr(at).encode()


def erased_key_bytes(key: bytes) -> bytes:
    """:func:`erased_key` for a table keyed by bytes."""
    return erased_key(key.decode()).encode("utf-8", "surrogateescape")


def decode(raw: bytes | None) -> Record:
    if not raw:
        return Missing()
    if raw.startswith(FORWARD):
        return Forward(raw[len(FORWARD) :].decode())
    if raw.startswith(FORWARD_KEEPING):
        target, outbox = msgpack.unpackb(raw[len(FORWARD_KEEPING) :], raw=False)
        return Forward(target, _outbox(outbox))
    if raw.startswith(SUPPRESSED):
        return Suppressed()
    if raw.startswith(ERASED):
        return Erased(float(raw[len(ERASED) :]))
    fields = msgpack.unpackb(raw, raw=False)
    outbox = fields.pop(OUTBOX, None)
    state = CustomerState.from_map(fields)
    return Profile(state, _outbox(outbox)) if outbox else Profile(state)


def _outbox(entries: list[list[Any]]) -> tuple[Sent, ...]:
    return tuple(_sent(*entry) for entry in entries)


def _sent(place: str, at: float, commands: list[dict[str, Any]], sends: list[dict[str, Any]]) -> Sent:
    return Sent(place, at, tuple(commands), tuple(sends))


def _entries(outbox: tuple[Sent, ...]) -> list[list[Any]]:
    return [[s.place, s.at, s.commands, s.sends] for s in outbox]


def encode(record: Record) -> bytes | None:
    """Bytes for the table; None means delete the key (a changelog tombstone)."""
    if isinstance(record, Missing):
        return None
    if isinstance(record, Forward):
        if record.outbox:
            return FORWARD_KEEPING + msgpack.packb([record.target, _entries(record.outbox)], use_bin_type=True)
        return FORWARD + record.target.encode()
    if isinstance(record, Suppressed):
        return SUPPRESSED
    if isinstance(record, Erased):
        return erased_mark(record.at)
    if not record.outbox:
        return record.state.to_bytes()
    return msgpack.packb(record.state.to_map() | {OUTBOX: _entries(record.outbox)}, use_bin_type=True)


_JOURNEYS = msgpack.packb("journeys")


def journey_places(raw: bytes) -> dict[tuple[str, str, str], int]:
    """Where a stored profile is in its journeys: ``{(journey, version, step): 1}``; nothing
    for a pointer, a mark or a profile in no journey.

    The decide agent asks this of the old and the new value of every write, and every
    profile is read again after a rebalance, so the profile is not decoded whole (a decode
    costs 12-40 us, most of a worker's counting): every profile has the field, so when its
    name occurs once in the bytes, that is the field, and only the value after it is read."""
    if not is_profile(raw):
        return {}
    try:
        journeys = _journeys_field(raw)
        return {(str(jid), str(inst.get("v")), str(inst.get("step"))): 1 for jid, inst in journeys.items()}
    except (ValueError, TypeError, AttributeError, msgpack.UnpackException):
        return {}  # not a profile this release can read: counted as in no journey


def _journeys_field(raw: bytes) -> dict[Any, Any]:
    """The value of a stored profile's ``journeys`` field."""
    at = raw.find(_JOURNEYS)
    if at < 0 or raw.find(_JOURNEYS, at + 1) >= 0:  # a value spells it too: decode it all
        return msgpack.unpackb(raw, raw=False).get("journeys") or {}
    value = memoryview(raw)[at + len(_JOURNEYS) :]
    if value[:1] == b"\x80":  # an empty map: in no journey, not even unpacked
        return {}
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(value)
    return unpacker.unpack() or {}
