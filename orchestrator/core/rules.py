"""The first next-best-action rules, straight from the seeds.

* Searched or viewed and did not buy: a remarketing ad with an incentive.
* Bought: stop remarketing what was bought, then upsell (first purchase) or
  retention (returning customer) instead.

Rules propose candidates (and say what they held back themselves, e.g. a
cooldown); the contact policy in :mod:`policy` has the last word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.core.commands import Command, make_command
from orchestrator.core.event import Event
from orchestrator.core.fold import purchased_products, subject_of
from orchestrator.core.policy import ALREADY_CONVERTED, COOLDOWN, Policy, has_consent
from orchestrator.core.state import CustomerState

REMARKETING = "remarketing"
POST_PURCHASE = "post_purchase"
STOP_TTL_S = 7 * 86400.0


@dataclass(frozen=True)
class Held:
    """A candidate the rules or the policy held back, and why."""

    command: Command
    reason: str


def who(state: CustomerState) -> str:
    return state.customer_id or state.key


def remarketing(state: CustomerState, event: Event, policy: Policy, now: float) -> tuple[list[Command], list[Held]]:
    """An incentive ad for what the customer looked at and has not bought."""
    subject = subject_of(event)
    if event.type not in ("search", "product_view", "add_to_cart") or subject is None:
        return [], []
    in_cart = event.type == "add_to_cart"
    percent = policy.cart_discount_percent if in_cart else policy.remarketing_discount_percent
    kind, _, value = subject.partition(":")
    command = make_command(
        customer_id=who(state),
        channel="ads",
        action="remarketing_ad",
        journey=REMARKETING,
        trigger=event.event_id,
        subject=subject,
        payload={
            kind: value,
            "incentive": {"type": "discount", "percent": percent, "code": promo_code(percent, value)},
            "in_cart": in_cart,
        },
        reason=_remarketing_reason(event, kind, value, percent),
        now=now,
    )
    if kind == "product" and value in state.purchased:
        return [], [Held(command, ALREADY_CONVERTED)]
    last = state.remarketed.get(subject)
    if last is not None and now - last < policy.remarketing_cooldown_s:
        return [], [Held(command, COOLDOWN)]
    return [command], []


def promo_code(percent: int, subject: str) -> str:
    """A readable, deterministic code: RM10-TRAILSHOES."""
    letters = "".join(ch for ch in subject.upper() if ch.isalnum())[:12]
    return f"RM{percent}-{letters or 'OFFER'}"


def _remarketing_reason(event: Event, kind: str, value: str, percent: int) -> str:
    what = f"'{value}'" if kind == "query" else f"product {value}"
    did = {"search": f"searched for {what}", "product_view": f"viewed {what}", "add_to_cart": f"put {what} in the cart"}
    return f"{did[event.type]} on {event.channel} and has not bought it: remarketing ad with {percent}% off"


def post_purchase(state: CustomerState, event: Event, now: float) -> list[Command]:
    """Upsell a first-time buyer or retain a returning one."""
    return [_follow_up(state, event, now)] if event.type == "purchase" else []


def stop_chasing(state: CustomerState, event: Event, policy: Policy, now: float) -> list[Command]:
    """Stop the ads running for what a purchase answered, or all of them when the customer
    withdraws consent for ads: whichever rule or journey started them. Not a rule one can
    turn off: remarketing what was bought, or whom asked not to be, is what the seeds forbid."""
    if not state.remarketed:
        return []
    if event.type == "purchase":
        return _stop_bought(state, event, [s for s in state.remarketed if _answered_by_purchase(s, event)], now)
    if event.type == "consent" and not has_consent(state, "ads", policy):
        return _stop_all(state, event, now)
    return []


def stop_after_merge(state: CustomerState, event: Event, policy: Policy, now: float) -> list[Command]:
    """:func:`stop_chasing` for two profiles just merged into ``state``: an ad may run on one
    for what was bought, or after an opt-out made, on the other, if the purchase or the
    opt-out reached its profile before the merge did (in a stream, an event can race the
    hand-over). ``event`` is the hand-over: the stop is decided once, when it arrives."""
    if not state.remarketed:
        return []
    if not has_consent(state, "ads", policy):
        return _stop_all(state, event, now)
    last_bought = max(state.purchased.values(), default=None)
    answered = [s for s, since in state.remarketed.items() if _answered_by_purchases(s, since, state, last_bought)]
    return _stop_bought(state, event, answered, now)


def _stop_bought(state: CustomerState, event: Event, answered: list[str], now: float) -> list[Command]:
    return [stop_remarketing(state, event, sorted(answered), "bought after remarketing for", now)] if answered else []


def _stop_all(state: CustomerState, event: Event, now: float) -> list[Command]:
    """Every ad: the customer said no to ads."""
    subjects = sorted(state.remarketed)
    return [stop_remarketing(state, event, subjects, "withdrew consent for ads; was remarketing", now)]


def _answered_by_purchases(subject: str, since: float, state: CustomerState, last_bought: float | None) -> bool:
    """A product bought at any time; a query by any purchase since its ad began."""
    if subject.startswith("query:"):
        return last_bought is not None and last_bought >= since
    return subject.removeprefix("product:") in state.purchased


def stop_remarketing(state: CustomerState, event: Event, subjects: list[str], why: str, now: float) -> Command:
    return make_command(
        customer_id=who(state),
        channel="ads",
        action="remarketing_stop",
        journey=REMARKETING,
        trigger=event.event_id,
        subject=",".join(subjects),
        payload={"subjects": subjects},
        reason=f"{why} {', '.join(subjects)}: stop those ads",
        now=now,
        ttl_s=STOP_TTL_S,
    )


def _answered_by_purchase(subject: str, event: Event) -> bool:
    """A purchase answers every query, and the products it contains."""
    if subject.startswith("query:"):
        return True
    return subject.removeprefix("product:") in purchased_products(event)


def _follow_up(state: CustomerState, event: Event, now: float) -> Command:
    products = purchased_products(event)
    value = event.properties.get("value")
    payload: dict[str, Any]
    if state.purchases <= 1:
        action, payload = "upsell", {"purchased": products, "offer": "complementary_products"}
        reason = f"first purchase ({_describe(products, value, state.currency)}): suggest what goes with it"
    else:
        action, payload = "retention", {"purchases": state.purchases, "content": "loyalty_benefits"}
        reason = f"purchase number {state.purchases} ({_describe(products, value, state.currency)}): keep them close"
    return make_command(
        customer_id=who(state),
        channel="email",
        action=action,
        journey=POST_PURCHASE,
        trigger=event.event_id,
        subject=",".join(products),
        payload=payload | {"order_value": value if isinstance(value, (int, float)) else None},
        reason=reason,
        now=now,
    )


def _describe(products: list[str], value: object, currency: str | None) -> str:
    items = ", ".join(products) if products else "no product list"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{items}; {value:.2f} {currency or ''}".strip()
    return items
