"""Identifier tokens: ``kind:value``, normalised, and keyed-hashed where configured.

A token names one identifier everywhere: in the identity table, in state, in
Redis aliases and in the API. Kinds listed in ``hash_kinds`` (by default email
and phone) are replaced by an HMAC-SHA256 of the normalised value when a key is
configured, so raw addresses never reach state, logs or the product's topics.
Cookies and device ids stay readable: channels need them to target an ad.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

CUSTOMER_ID = "customer_id"
# Lower rank = more stable. Decides which profile survives a merge, and which
# identifier of an event routes it.
KIND_RANK = {CUSTOMER_ID: 0, "loyalty_id": 1, "email": 2, "phone": 3, "device": 4, "cookie": 5}
OTHER_RANK = 9
HASH_HEX = 32


@dataclass(frozen=True)
class Hasher:
    """How identifiers are turned into tokens; the same everywhere in a deployment."""

    key: bytes | None = None
    kinds: frozenset[str] = frozenset({"email", "phone"})

    def value(self, kind: str, raw: str) -> str:
        """The stored value of one identifier: normalised, then hashed if its kind says so."""
        value = normalise(kind, raw)
        if self.key is None or kind not in self.kinds:
            return value
        return hmac.new(self.key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:HASH_HEX]

    def identifiers(self, raw: dict[str, str]) -> dict[str, str]:
        return {kind: self.value(kind, value) for kind, value in raw.items()}

    def token(self, kind: str, raw: str) -> str:
        return f"{kind}:{self.value(kind, raw)}"

    def pseudonym(self, key: str) -> str:
        """How a record kept for good (the erasure audit) names the profile key ``key``: as it
        is, unless it holds a raw identifier of a kind hashed here, i.e. no hash key is set and
        it is ``kind:value`` of such a kind; then the kind and an unkeyed digest of the token.
        Whoever knows the address finds its record by the same digest, and so does whoever
        guesses it: only a hash key keeps guessers out."""
        kind, sep, _ = key.partition(":")
        if self.key is not None or not sep or kind not in self.kinds:
            return key
        return f"{kind}:{hashlib.sha256(key.encode()).hexdigest()[:HASH_HEX]}"

    def lookup_token(self, text: str) -> str:
        """``email:Alice@Example.com`` as a user types it -> the token stored for it."""
        kind, sep, raw = text.partition(":")
        return self.token(kind, raw) if sep and raw else text


PLAIN = Hasher()


def normalise(kind: str, value: str) -> str:
    """Same person, same token: emails are case-insensitive, phones keep digits and a leading +."""
    value = value.strip()
    if kind == "email":
        return value.lower()
    if kind == "phone":
        digits = "".join(ch for ch in value if ch.isdigit())
        return ("+" + digits) if value.startswith("+") else digits
    return value


def rank(kind: str) -> int:
    return KIND_RANK.get(kind, OTHER_RANK)


def tokens_of(customer_id: str | None, identifiers: dict[str, str]) -> list[str]:
    """All tokens of an event (identifiers already hashed), most stable first."""
    found = [f"{CUSTOMER_ID}:{customer_id}"] if customer_id else []
    found += [f"{kind}:{value}" for kind, value in sorted(identifiers.items(), key=lambda kv: (rank(kv[0]), kv[0]))]
    return found


def kind_of(token: str) -> str:
    return token.partition(":")[0]


def names_a_customer(key: str) -> bool:
    """Whether a profile's key is a customer id (bare, or ``customer_id:...``), not an
    anonymous profile's ``kind:value`` (see :func:`profile_key_for`)."""
    return ":" not in key or kind_of(key) == CUSTOMER_ID


def profile_key_for(token: str) -> str:
    """The key a new profile gets when ``token`` is the first thing known of it.

    A customer id names its profile directly (so channels and the CLI can use
    it); any other identifier names an anonymous profile as ``kind:value``. A
    customer id with a colon in it keeps its token (``customer_id:crm:42``):
    taken bare it could be another identifier's key (``cookie:zz``), and the two
    would share one profile without an ``identify``. So a key without a colon,
    a key ``customer_id:...`` and any other ``kind:value`` never name the same
    thing.
    """
    kind, _, value = token.partition(":")
    return value if kind == CUSTOMER_ID and ":" not in value else token


def legacy_key(key: str) -> str | None:
    """Where a profile of key ``key`` lived before customer ids with a colon kept their
    token: the bare id, which an older version gave it. None for every other key."""
    kind, _, value = key.partition(":")
    return value if kind == CUSTOMER_ID and ":" in value else None
