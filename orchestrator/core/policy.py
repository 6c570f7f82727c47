"""Contact policy: the last word before anything reaches a customer.

Consent first, a hard rule: a global do-not-contact, then per-channel consent; then an
address, for a channel that delivers to one (an email to a cookie reaches no one).
Then whether the command is still worth sending (its expiry), the customer's
quiet hours, and fatigue. Stopping an action already under way is never a
contact, so only expiry ever holds a stop back.

Reasons are a small fixed set of codes (they label a metric and are explained
in plain words by :mod:`orchestrator.audit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from orchestrator.core.commands import Command
from orchestrator.core.fold import consent_word
from orchestrator.core.localtime import next_local_time, zone
from orchestrator.core.state import CustomerState
from orchestrator.identity.tokens import names_a_customer
from schemas.events import clock_minutes

DAY_S = 86400.0
NOT_CONTACTS = frozenset({"remarketing_stop"})

# Every reason a candidate can be held back for, policy and rules and journeys alike.
DO_NOT_CONTACT = "do_not_contact"
NO_CONSENT = "no_consent"
EXPIRED = "expired"
QUIET_HOURS = "quiet_hours"
FREQUENCY_CAP = "frequency_cap"
COOLDOWN = "cooldown"  # rules: the same subject was remarketed recently
ALREADY_CONVERTED = "already_converted"  # rules: the customer already bought it
HOLDOUT = "holdout"  # journeys: the split's control group
NO_ADDRESS = "no_address"  # an anonymous profile without the identifier the channel delivers to
REASONS = (
    DO_NOT_CONTACT, NO_CONSENT, NO_ADDRESS, EXPIRED, QUIET_HOURS, FREQUENCY_CAP, COOLDOWN, ALREADY_CONVERTED, HOLDOUT,
)  # fmt: skip
# channel -> the identifier kind it delivers to, when the profile has no customer id
CHANNEL_ADDRESSES = (("email", "email"), ("sms", "phone"))


RULES = frozenset({"remarketing", "post_purchase"})  # the built-in reflex rules (orchestrator.core.rules)


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
    rules: frozenset[str] = RULES  # built-in reflexes that run
    quiet_hours_exempt_channels: frozenset[str] = frozenset({"ads", "web"})
    default_timezone: str = "UTC"  # quiet hours of a customer who gave no time zone
    channel_addresses: tuple[tuple[str, str], ...] = CHANNEL_ADDRESSES


def contactable(state: CustomerState, channel: str, policy: Policy) -> str | None:
    """None when consent allows contacting the customer on ``channel`` and it has an address
    there, else the reason.

    Only consent and address: no clock, no fatigue. The final check of every decision and the
    next-best-action ranking both ask this, so they can never disagree about consent.
    """
    if state.do_not_contact:
        return DO_NOT_CONTACT
    said = consent_word(state.consent, channel)
    if said is False:
        return NO_CONSENT
    if channel in policy.consent_required_channels and said is not True:
        return NO_CONSENT  # opt-in channels need a yes
    if not has_address(state, channel, policy):
        return NO_ADDRESS
    return None


def has_address(state: CustomerState, channel: str, policy: Policy) -> bool:
    """Whether ``channel`` can reach the customer: it delivers to no address of its own, or the
    profile has one (the identifier of the kind it names), or the customer is known by a
    customer id, which the channel's system looks its own address up by. Otherwise the command
    would count as a contact, use up the fatigue cap and end a journey's step, and reach no one."""
    if state.customer_id is not None or names_a_customer(state.key):
        return True
    for addressed, kind in policy.channel_addresses:
        if addressed == channel:
            return kind in state.identifiers
    return True


def has_consent(state: CustomerState, channel: str, policy: Policy) -> bool:
    return contactable(state, channel, policy) is None


def contacts_today(state: CustomerState, channel: str, now: float) -> int:
    return sum(1 for t in state.contacts.get(channel, ()) if now - t < DAY_S)


def in_quiet_hours(state: CustomerState, channel: str, at: float, policy: Policy) -> bool:
    """Whether ``at`` falls in the customer's quiet hours, on their own clock.

    The window is local time in the customer's time zone (else the policy's default);
    it may wrap midnight (21:00-08:00). Channels that wait for the customer to look,
    such as ads and the web site, are exempt.
    """
    if not state.quiet_hours or channel in policy.quiet_hours_exempt_channels:
        return False
    start, end = clock_minutes(state.quiet_hours.get("start")), clock_minutes(state.quiet_hours.get("end"))
    if start is None or end is None or start == end:
        return False
    local = datetime.fromtimestamp(at, zone(state.timezone or policy.default_timezone))
    minute = local.hour * 60 + local.minute
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def quiet_hours_end(state: CustomerState, channel: str, at: float, policy: Policy) -> float | None:
    """When the quiet hours that ``at`` falls in end, on the customer's clock; None when
    ``at`` is not in them (or ``channel`` is exempt), so a contact may go out now."""
    if not in_quiet_hours(state, channel, at, policy):
        return None
    return next_local_time(at, state.quiet_hours["end"], state.timezone or policy.default_timezone)


def hold_back_reason(
    state: CustomerState, command: Command, policy: Policy, at: float, decided_at: float | None = None
) -> str | None:
    """None when the command may go out; otherwise the reason it may not.

    ``at`` is the moment the command is judged as of (its ``issued_at``: a wait that
    fired late is judged as the customer was when it fell due); ``decided_at`` is when
    it would actually leave, which is what its expiry is measured against.
    """
    expired = command.expires_at <= (at if decided_at is None else decided_at)
    if command.action in NOT_CONTACTS:
        return EXPIRED if expired else None
    if reason := contactable(state, command.channel, policy):
        return reason
    if expired:
        return EXPIRED
    if in_quiet_hours(state, command.channel, at, policy):
        return QUIET_HOURS
    if contacts_today(state, command.channel, at) >= policy.frequency_cap_per_day:
        return FREQUENCY_CAP
    return None


def record_contact(state: CustomerState, command: Command, now: float) -> None:
    """Remember the contact for fatigue, forgetting contacts older than a day."""
    if command.action in NOT_CONTACTS:
        return
    times = [t for t in state.contacts.get(command.channel, ()) if now - t < DAY_S]
    times.append(now)
    state.contacts[command.channel] = times


def forget_contact(state: CustomerState, command: Command, now: float) -> None:
    """Undo :func:`record_contact` for a command withdrawn before it left, so a contact
    that never happened does not count against the frequency cap."""
    times = state.contacts.get(command.channel)
    if command.action in NOT_CONTACTS or not times or now not in times:
        return
    last = len(times) - 1 - times[::-1].index(now)  # the newest matching entry: the one this command added
    state.contacts[command.channel] = times[:last] + times[last + 1 :]
