"""Contact policy: the last word before anything reaches a customer.

Consent first (a hard rule), then fatigue. Stopping an action already under
way is never a contact, so it is never held back.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.commands import Command
from orchestrator.core.fold import ALL_CHANNELS
from orchestrator.core.state import CustomerState

DAY_S = 86400.0
NOT_CONTACTS = frozenset({"remarketing_stop"})


@dataclass(frozen=True)
class Policy:
    """The knobs of decision making, independent of how they are configured."""

    consent_required_channels: frozenset[str] = frozenset()
    frequency_cap_per_day: int = 3
    remarketing_cooldown_s: float = DAY_S
    remarketing_discount_percent: int = 10
    cart_discount_percent: int = 15
    recent_events: int = 20
    dedupe_window: int = 128
    rules: frozenset[str] = frozenset({"remarketing", "post_purchase"})  # built-in reflexes that run
    quiet_hours_exempt_channels: frozenset[str] = frozenset({"ads", "web"})


def has_consent(state: CustomerState, channel: str, policy: Policy) -> bool:
    """Explicit opt-out always wins; opt-in channels need an explicit yes."""
    if state.consent.get(ALL_CHANNELS) is False or state.consent.get(channel) is False:
        return False
    if channel in policy.consent_required_channels:
        return state.consent.get(channel) is True
    return True


def contacts_today(state: CustomerState, channel: str, now: float) -> int:
    return sum(1 for t in state.contacts.get(channel, ()) if now - t < DAY_S)


def hold_back_reason(state: CustomerState, command: Command, policy: Policy, now: float) -> str | None:
    """None when the command may go out; otherwise the reason it may not."""
    if command.action in NOT_CONTACTS:
        return None
    if not has_consent(state, command.channel, policy):
        return "no_consent"
    if contacts_today(state, command.channel, now) >= policy.frequency_cap_per_day:
        return "frequency_cap"
    return None


def record_contact(state: CustomerState, command: Command, now: float) -> None:
    """Remember the contact for fatigue, forgetting contacts older than a day."""
    if command.action in NOT_CONTACTS:
        return
    times = [t for t in state.contacts.get(command.channel, ()) if now - t < DAY_S]
    times.append(now)
    state.contacts[command.channel] = times
