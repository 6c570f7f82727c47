"""The normalised event that flows from ingestion to the decision core."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Highest first: the most stable identifier names an anonymous profile.
IDENTIFIER_PRIORITY = ("loyalty_id", "email", "phone", "device", "cookie")


@dataclass(frozen=True, slots=True)
class Event:
    """A validated ChannelEvent plus what ingestion learned about it."""

    event_id: str
    type: str
    ts: float
    customer_key: str
    channel: str
    received_at: float
    customer_id: str | None = None
    identifiers: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    action_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Event:
        return cls(**data)


def customer_key(customer_id: str | None, identifiers: dict[str, str] | None) -> str:
    """The key events are partitioned and stored by.

    A known customer id wins; otherwise the most stable identifier present, as
    ``kind:value``, names an anonymous profile until identity resolution links it.
    """
    if customer_id:
        return customer_id
    ids = identifiers or {}
    for kind in IDENTIFIER_PRIORITY:
        if ids.get(kind):
            return f"{kind}:{ids[kind]}"
    kind = min(ids)
    return f"{kind}:{ids[kind]}"
