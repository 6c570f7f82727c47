"""Ranked next best actions per channel, for channels that ask "what now for this customer?".

The reflex rules and journeys *push* commands when something happens; a web page,
an app, a store clerk or a call-centre agent instead *pulls* the best thing to do
while the customer is in front of them. This module answers that question from
the state alone, in the seeds' spirit:

* context decides: the same fact (a full cart) is a banner on the web, an email,
  an ad, or a word at the till, and each channel ranks it differently;
* no spam: a channel without consent gets nothing, an outbound channel at its
  frequency cap gets nothing, and no channel gets a mass-broadcast default;
* a loyal customer is thanked with something that asks for nothing in return.

Pure and deterministic: no I/O, no clock but ``now``; the same state and ``now``
give the same answer, so the read model can precompute it and tests can pin it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.core.lifecycle import stage
from orchestrator.core.policy import Policy, contactable, contacts_today
from orchestrator.core.rules import promo_code
from orchestrator.core.state import CustomerState
from schemas.events import is_channel_name

CHANNELS = ("web", "email", "ads", "app", "store", "support")
# Channels the customer comes to: asking us there is not a contact we start, so no cap.
INBOUND = frozenset({"web", "app", "store", "support"})

DAY_S = 86400.0
INTEREST_MAX_AGE_S = 30 * DAY_S  # older interests are not "recent" any more
PURCHASE_MAX_AGE_S = 30 * DAY_S  # older purchases do not call for an upsell
MAX_INTERESTS = 3  # the newest interests that become candidates
MAX_LISTED = 5  # products named in one payload
MAX_PER_CHANNEL = 20  # what the API's largest limit can ask for
PREFERRED_BOOST = 1.2


@dataclass(frozen=True)
class Candidate:
    """One thing worth doing, with how well it fits each channel (0 = not there)."""

    action: str
    score: float
    reason: str
    payload: dict[str, Any]
    fit: Mapping[str, float]
    elsewhere: float = 0.0  # fit on touched channels outside CHANNELS (social, search, ...)
    actions: Mapping[str, str] = field(default_factory=dict)  # channel-specific action names

    def on(self, channel: str) -> float:
        """How well this fits ``channel``: as listed, 0 on an unlisted fixed channel."""
        return self.fit.get(channel, 0.0 if channel in CHANNELS else self.elsewhere)


def next_best_actions(state: CustomerState, now: float, policy: Policy) -> dict[str, list[dict[str, Any]]]:
    """For each channel this customer may be reached on, the candidates best first.

    Channels without consent, or without an address for an anonymous customer (an email for a
    cookie), are left out entirely; a channel with nothing
    relevant to say maps to an empty list rather than to filler.
    """
    candidates = _candidates(state, now, policy)
    preferred = preferred_channels(state)
    ranked: dict[str, list[dict[str, Any]]] = {}
    for channel in channels_of(state):
        if not _reachable(state, channel, policy, now):
            continue
        boost = PREFERRED_BOOST if channel in preferred else 1.0
        offers = [_offer(c, channel, boost) for c in candidates if c.on(channel) > 0]
        offers.sort(key=lambda o: (-o["score"], o["action"], _subject(o["payload"])))
        ranked[channel] = offers[:MAX_PER_CHANNEL]
    return ranked


def channels_of(state: CustomerState) -> list[str]:
    """The fixed set plus every well-named channel the customer has touched, in a stable order."""
    touched = sorted(ch for ch in state.last_touch if ch not in CHANNELS and is_channel_name(ch))
    return [*CHANNELS, *touched]


def preferred_channels(state: CustomerState) -> frozenset[str]:
    """The channels the customer said they prefer (read defensively: older states lack the field)."""
    found = getattr(state, "preferred_channels", None)
    if isinstance(found, str):
        return frozenset({found})
    if isinstance(found, Iterable):
        return frozenset(ch for ch in found if isinstance(ch, str))
    return frozenset()


def _reachable(state: CustomerState, channel: str, policy: Policy, now: float) -> bool:
    """Consent as the contact policy sees it, then fatigue for the channels that push.

    Quiet hours are left to the send-time check: this list is served later, when
    the hour may be different."""
    if contactable(state, channel, policy) is not None:
        return False
    return channel in INBOUND or contacts_today(state, channel, now) < policy.frequency_cap_per_day


def _offer(candidate: Candidate, channel: str, boost: float) -> dict[str, Any]:
    score = min(1.0, candidate.score * candidate.on(channel) * boost)
    return {
        "action": candidate.actions.get(channel, candidate.action),
        "score": round(score, 3),
        "reason": candidate.reason,
        "payload": candidate.payload,
    }


def _subject(payload: Mapping[str, Any]) -> str:
    """A tie-breaker that keeps equal scores in a fixed order."""
    return str(payload.get("product") or payload.get("query") or payload.get("products") or "")


def _decay(age_s: float, half_life_s: float) -> float:
    """1.0 now, 0.5 after one half-life; a future timestamp counts as now."""
    return float(0.5 ** (max(0.0, age_s) / half_life_s))


# -- candidates -------------------------------------------------------------------------


def _candidates(state: CustomerState, now: float, policy: Policy) -> list[Candidate]:
    phase = stage(state, now)
    found = [
        *_cart(state, now, policy),
        *_interests(state, now, policy),
        *_recent_purchase(state, now),
        *_thank_you(state, now),
        *_win_back(state, now, policy, phase),
        *_welcome(state, phase, policy),
    ]
    return found or _default()


def _cart(state: CustomerState, now: float, policy: Policy) -> list[Candidate]:
    """Items left in the cart: the nearest thing to a purchase, so the strongest candidate."""
    if not state.cart:
        return []
    products = list(reversed(state.cart))[:MAX_LISTED]  # newest first
    added = max((_interest_ts(state, f"product:{p}") or state.last_seen) for p in products)
    percent = policy.cart_discount_percent
    value = round(sum(_num(line.get("price")) * _num(line.get("qty"), 1) for line in state.cart.values()), 2)
    items = "1 item" if len(state.cart) == 1 else f"{len(state.cart)} items"
    return [
        Candidate(
            action="cart_reminder",
            score=0.9 * (0.5 + 0.5 * _decay(now - added, 2 * DAY_S)),
            reason=f"left {items} in the cart ({', '.join(products)}) without buying: remind them, {percent}% off",
            payload={
                "products": products,
                "cart_value": value,
                "incentive": {"type": "discount", "percent": percent, "code": promo_code(percent, products[0])},
            },
            fit={"web": 1.0, "app": 1.0, "email": 0.9, "ads": 0.85, "store": 0.6, "support": 0.4},
            elsewhere=0.5,
            actions={"ads": "remarketing_ad"},
        )
    ]


def _interests(state: CustomerState, now: float, policy: Policy) -> list[Candidate]:
    """What they looked at and did not buy: show it where they are, chase it with an ad elsewhere."""
    recent = [
        (subject, info)
        for subject, info in state.interests.items()
        if subject.removeprefix("product:") not in state.cart and now - _num(info.get("ts")) <= INTEREST_MAX_AGE_S
    ]
    recent.sort(key=lambda si: (-_num(si[1].get("ts")), si[0]))
    found: list[Candidate] = []
    percent = policy.remarketing_discount_percent
    for subject, info in recent[:MAX_INTERESTS]:
        kind, _, value = subject.partition(":")
        weight = 0.75 if kind == "product" else 0.7
        freshness = 0.3 + 0.7 * _decay(now - _num(info.get("ts")), 3 * DAY_S)
        what = f"'{value}'" if kind == "query" else f"product {value}"
        seen = "searched for" if kind == "query" else "looked at"
        via = f" on {info['channel']}" if isinstance(info.get("channel"), str) else ""
        found.append(
            Candidate(
                action="recommend",
                score=weight * freshness,
                reason=f"{seen} {what}{via} and has not bought it: show it again",
                payload={kind: value},
                fit={"web": 1.0, "app": 1.0, "email": 0.7, "store": 0.6, "support": 0.3},
            )
        )
        found.append(
            Candidate(
                action="remarketing_ad",
                score=weight * freshness,
                reason=f"{seen} {what}{via} and has not bought it: remarketing ad with {percent}% off",
                payload={
                    kind: value,
                    "incentive": {"type": "discount", "percent": percent, "code": promo_code(percent, value)},
                },
                fit={"ads": 1.0},
                elsewhere=0.6,  # other paid media the customer turned up on
            )
        )
    return found


def _recent_purchase(state: CustomerState, now: float) -> list[Candidate]:
    """Just bought: suggest what goes with it (never the same thing again)."""
    last = _last_purchase(state)
    if last is None or now - last > PURCHASE_MAX_AGE_S:
        return []
    products = [p for p, ts in reversed(state.purchased.items()) if ts == last][:MAX_LISTED]
    bought = ", ".join(products) if products else "an order"
    return [
        Candidate(
            action="upsell",
            score=0.7 * _decay(now - last, 7 * DAY_S),
            reason=f"bought {bought} recently: suggest what goes with it",
            payload={"purchased": products, "offer": "complementary_products"},
            fit={"web": 1.0, "app": 1.0, "email": 0.9, "store": 0.8, "ads": 0.6, "support": 0.4},
            elsewhere=0.4,
        )
    ]


def _thank_you(state: CustomerState, now: float) -> list[Candidate]:
    """A loyal customer is thanked with nothing asked back: no offer, no code, no call to action."""
    if state.purchases < 3:
        return []
    last = _last_purchase(state)
    freshness = 0.6 + 0.4 * _decay(now - last, 14 * DAY_S) if last is not None else 0.6
    return [
        Candidate(
            action="thank_you",
            score=0.8 * freshness,
            reason=f"has bought {state.purchases} times: say thank you and ask for nothing",
            payload={"purchases": state.purchases, "call_to_action": None},
            fit={"store": 1.0, "support": 1.0, "email": 0.9, "app": 0.8, "web": 0.7},  # an ad is no thank-you
        )
    ]


def _win_back(state: CustomerState, now: float, policy: Policy, phase: str) -> list[Candidate]:
    """A customer who has gone quiet: invite them back with a reason to come."""
    if phase != "lapsed":
        return []
    days = int((now - state.last_seen) // DAY_S)
    percent = policy.remarketing_discount_percent
    return [
        Candidate(
            action="win_back",
            score=0.85,
            reason=f"bought {state.purchases} times but quiet for {days} days: invite them back with {percent}% off",
            payload={
                "days_quiet": days,
                "incentive": {"type": "discount", "percent": percent, "code": f"WB{percent}-WELCOMEBACK"},
            },
            fit={"email": 1.0, "web": 1.0, "app": 0.9, "store": 0.9, "ads": 0.8, "support": 0.8},
            elsewhere=0.6,
        )
    ]


def _welcome(state: CustomerState, phase: str, policy: Policy) -> list[Candidate]:
    """New faces: anonymous visitors get a sign-up offer, known prospects a welcome."""
    if phase == "anonymous":
        percent = policy.remarketing_discount_percent
        return [
            Candidate(
                action="sign_up_offer",
                score=0.5,
                reason=f"not signed up yet: offer an account with {percent}% off the first order",
                payload={"offer": "first_order_discount", "percent": percent},
                # email only reaches them with an address: the contact policy's has_address
                fit={"web": 1.0, "app": 1.0, "email": 0.8, "store": 0.6, "ads": 0.5, "support": 0.4},
            )
        ]
    if phase == "prospect":
        return [
            Candidate(
                action="welcome",
                score=0.5,
                reason="known by a customer id but not engaged yet: welcome them and show how things work",
                payload={"content": "getting_started"},
                fit={"email": 1.0, "web": 1.0, "app": 1.0, "store": 0.8, "support": 0.6},
            )
        ]
    return []


def _default() -> list[Candidate]:
    """Nothing specific known: personalise where they are, listen where a person serves them.

    Outbound channels get nothing: a message with no reason behind it is a broadcast."""
    return [
        Candidate(
            action="personalised_content",
            score=0.1,
            reason="nothing specific to act on: show content from what they browse most",
            payload={"content": "popular_in_their_categories"},
            fit={"web": 1.0, "app": 1.0},
        ),
        Candidate(
            action="listen",
            score=0.1,
            reason="nothing specific to act on: ask what they need and note it",
            payload={"content": "open_question"},
            fit={"store": 1.0, "support": 1.0},
        ),
    ]


def _last_purchase(state: CustomerState) -> float | None:
    """When they last bought: the newest purchased product, else a purchase in the recent events."""
    times = list(state.purchased.values())
    times += [_num(e.get("ts")) for e in state.recent if e.get("type") == "purchase"]
    return max(times) if times and state.purchases else None


def _interest_ts(state: CustomerState, subject: str) -> float | None:
    info = state.interests.get(subject)
    return _num(info.get("ts")) if isinstance(info, Mapping) else None


def _num(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return float(value)
