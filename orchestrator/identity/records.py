"""What a key of the customers table holds: a profile, a forward pointer, or a suppression.

The identity graph lives in the customers table itself. A profile key holds the
customer's state; every other identifier of that customer holds a pointer to
it, so an event routed by any identifier finds the one profile in at most a few
hops. Pointers and suppressions start with ``0xc1``, a byte msgpack never
writes, so they can never be mistaken for a state record.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.state import CustomerState

MARK = b"\xc1"
FORWARD = MARK + b"F"
SUPPRESSED = MARK + b"S"


@dataclass(frozen=True)
class Missing:
    """Nothing is known under this key: a new profile starts here."""


@dataclass(frozen=True)
class Forward:
    """This identifier belongs to the profile stored under ``target``."""

    target: str


@dataclass(frozen=True)
class Suppressed:
    """Erased with suppression: events with this identifier are dropped."""


@dataclass(frozen=True)
class Profile:
    state: CustomerState


Record = Missing | Forward | Suppressed | Profile


def decode(raw: bytes | None) -> Record:
    if not raw:
        return Missing()
    if raw.startswith(FORWARD):
        return Forward(raw[len(FORWARD) :].decode())
    if raw.startswith(SUPPRESSED):
        return Suppressed()
    return Profile(CustomerState.from_bytes(raw))


def encode(record: Record) -> bytes | None:
    """Bytes for the table; None means delete the key (a changelog tombstone)."""
    if isinstance(record, Missing):
        return None
    if isinstance(record, Forward):
        return FORWARD + record.target.encode()
    if isinstance(record, Suppressed):
        return SUPPRESSED
    return record.state.to_bytes()
