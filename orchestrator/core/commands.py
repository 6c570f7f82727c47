"""Commands the core decides on, with deterministic ids."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

TTL_S = {"ads": 24 * 3600.0, "email": 72 * 3600.0}
MAX_REASON = 1024  # schemas.ActionCommand.reason
DEFAULT_TTL_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Command:
    """One next best action; ``to_wire`` matches ``schemas.ActionCommand``."""

    action_id: str
    customer_id: str
    channel: str
    action: str
    payload: dict[str, Any]
    journey: str
    reason: str
    issued_at: float
    expires_at: float

    def to_wire(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "customer_id": self.customer_id,
            "channel": self.channel,
            "action": self.action,
            "payload": self.payload,
            "journey": self.journey,
            "reason": self.reason,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
        }


def action_id(*parts: str) -> str:
    """Same decision on the same inputs -> same id, so channels can deduplicate."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def make_command(
    *,
    customer_id: str,
    channel: str,
    action: str,
    journey: str,
    trigger: str,
    subject: str,
    payload: dict[str, Any],
    reason: str,
    now: float,
    ttl_s: float | None = None,
) -> Command:
    """Build a command whose id depends on who, what, why and which event, never on time."""
    ttl = ttl_s if ttl_s is not None else TTL_S.get(channel, DEFAULT_TTL_S)
    return Command(
        action_id=action_id(customer_id, journey, action, channel, trigger, subject),
        customer_id=customer_id,
        channel=channel,
        action=action,
        payload=payload,
        journey=journey,
        reason=reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…",
        issued_at=now,
        expires_at=now + ttl,
    )
