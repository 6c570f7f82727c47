"""Fold one event into a customer's state: counts, cart, purchases, consent, preferences, interests."""

from __future__ import annotations

import math
from typing import Any

from orchestrator.core.event import Event
from orchestrator.core.state import (
    MAX_IDENTIFIER_KINDS,
    MAX_KINDS,
    CustomerState,
    append_bounded,
    remember,
    trim_least,
)
from schemas.events import KNOWN_EVENT_TYPES, clock_minutes, is_channel_name, known_zone

INTEREST_TYPES = frozenset({"search", "product_view", "add_to_cart"})
ALL_CHANNELS = "*"
PREFERENCES = "preferences"  # the event type that sets time zone, quiet hours and preferred channels
MAX_PREFERRED = 10  # preferred channels kept


def fold(state: CustomerState, event: Event, *, recent_most: int, dedupe_most: int) -> None:
    """Apply ``event`` to ``state`` in place (the caller passes a thawed copy)."""
    subject = subject_of(event)
    _touch(state, event, subject, recent_most, dedupe_most)
    handler = _HANDLERS.get(event.type)
    if handler is not None:
        handler(state, event)
    if event.type in INTEREST_TYPES:
        _note_interest(state, event, subject)


def _touch(state: CustomerState, event: Event, subject: str | None, recent_most: int, dedupe_most: int) -> None:
    if not state.first_seen or event.ts < state.first_seen:
        state.first_seen = event.ts
    state.last_seen = max(state.last_seen, event.ts)
    state.events += 1
    if event.customer_id:
        state.customer_id = event.customer_id
    if event.identifiers:
        for kind, value in event.identifiers.items():
            remember(state.identifiers, kind, value, MAX_IDENTIFIER_KINDS)
    state.channel_counts[event.channel] = state.channel_counts.get(event.channel, 0) + 1
    state.type_counts[event.type] = state.type_counts.get(event.type, 0) + 1
    state.last_touch[event.channel] = max(state.last_touch.get(event.channel, 0.0), event.ts)
    if len(state.channel_counts) > MAX_KINDS or len(state.type_counts) > MAX_KINDS:
        keep_counts_bounded(state)
    summary = {"event_id": event.event_id, "type": event.type, "channel": event.channel, "ts": event.ts}
    if subject:
        summary["subject"] = subject
    append_bounded(state.recent, summary, recent_most)
    append_bounded(state.seen_ids, event.event_id, dedupe_most)


def keep_counts_bounded(state: CustomerState) -> None:
    """At most ``MAX_KINDS`` channels and event types counted: the least counted go first,
    never a type the product knows (journeys and the lifecycle stage read those)."""
    for channel in trim_least(state.channel_counts):
        state.last_touch.pop(channel, None)
    trim_least(state.type_counts, KNOWN_EVENT_TYPES)


def subject_of(event: Event) -> str | None:
    """What the customer showed interest in: a product id, else a search query."""
    props = event.properties
    product = props.get("product")
    if isinstance(product, (str, int)) and str(product):
        return f"product:{product}"
    query = props.get("query")
    if isinstance(query, str) and query.strip():
        return query_subject(query)
    return None


def query_subject(query: str) -> str:
    """A search as a subject: "Tent " and "tent" are one interest, one ad, one cooldown."""
    return f"query:{query.strip().lower()[:100]}"


def purchased_products(event: Event) -> list[str]:
    """Product ids in a purchase or cart event: ``product`` or ``products`` [{id|product}]."""
    props = event.properties
    found: list[str] = []
    if isinstance(props.get("product"), (str, int)):
        found.append(str(props["product"]))
    for item in props.get("products") or ():
        pid = item.get("id", item.get("product")) if isinstance(item, dict) else item
        if isinstance(pid, (str, int)):
            found.append(str(pid))
    return found


MAX_QTY = 10_000
MAX_ORDER_VALUE = 1e12  # keeps revenue finite whatever a channel sends


def _number(value: Any, default: float = 0.0) -> float:
    """A finite number from a property, or ``default``: NaN must never reach revenue."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    number = float(value)
    return number if math.isfinite(number) else default


def _note_interest(state: CustomerState, event: Event, subject: str | None) -> None:
    if subject and subject.removeprefix("product:") not in state.purchased:
        remember(state.interests, subject, {"ts": event.ts, "via": event.type, "channel": event.channel})


def _add_to_cart(state: CustomerState, event: Event) -> None:
    for pid in purchased_products(event):
        if _taken_out_since(state, pid, event.ts):
            continue
        qty = max(1, min(MAX_QTY, int(_number(event.properties.get("qty"), 1))))
        line = {"qty": qty, "price": _number(event.properties.get("price"))}
        remember(state.cart, pid, line)
        remember(state.cart_added, pid, max(event.ts, state.cart_added.get(pid, 0.0)))


def _taken_out_since(state: CustomerState, pid: str, ts: float) -> bool:
    """Whether ``pid`` was bought or taken out of the cart after ``ts``: an add that arrives
    late, after them, must not put it back (the cart would be chased for something gone)."""
    return state.purchased.get(pid, 0.0) > ts or state.removed_from_cart.get(pid, 0.0) > ts


def _remove_from_cart(state: CustomerState, event: Event) -> None:
    """Take each product named out of the cart, and remember when: a removal read late keeps
    the latest time it knows. A removal dated before the product was (last) added, read late,
    leaves it in: it took out an earlier line, and the customer put it back since."""
    for pid in purchased_products(event):
        if state.cart_added.get(pid, event.ts) <= event.ts:
            drop_line(state, pid)
        remember(state.removed_from_cart, pid, max(event.ts, state.removed_from_cart.get(pid, 0.0)))


def drop_line(state: CustomerState, pid: str) -> None:
    """Take ``pid``'s line out of the cart, with the time it was added."""
    state.cart.pop(pid, None)
    state.cart_added.pop(pid, None)


def _purchase(state: CustomerState, event: Event) -> None:
    products = purchased_products(event)
    state.purchases += 1
    state.revenue = round(state.revenue + min(_number(event.properties.get("value")), MAX_ORDER_VALUE), 2)
    if isinstance(event.properties.get("currency"), str):
        state.currency = event.properties["currency"]
    for pid in products:
        remember(state.purchased, pid, event.ts)
        drop_line(state, pid)
        state.interests.pop(f"product:{pid}", None)
    if not products:
        state.cart, state.cart_added = {}, {}
    # A purchase answers the searches that led to it: stop chasing those queries.
    state.interests = {s: v for s, v in state.interests.items() if not s.startswith("query:")}


def _consent(state: CustomerState, event: Event) -> None:
    """Per-channel opt-in/out (``channel`` + ``granted``, or ``channels``), and the global
    ``do_not_contact`` switch, which is kept apart so opting back in to one channel never
    lifts it: only ``do_not_contact: false`` does.

    The customer's latest word on a channel counts: a ``granted`` without a channel speaks
    for every channel, so it replaces what was said per channel before, and a later word on
    one channel overrides it there (:func:`orchestrator.core.policy.contactable`)."""
    props = event.properties
    if isinstance(props.get("do_not_contact"), bool):
        state.do_not_contact = props["do_not_contact"]
    granted, channel = props.get("granted"), props.get("channel")
    changes: dict[str, bool] = {}
    if isinstance(props.get("channels"), dict):
        changes = {ch: ok for ch, ok in props["channels"].items() if isinstance(ok, bool) and is_channel_name(ch)}
    elif isinstance(granted, bool) and channel is None:
        state.consent = {ALL_CHANNELS: granted}
    elif isinstance(granted, bool) and is_channel_name(channel):
        changes = {str(channel): granted}
    for name, said in changes.items():
        state.consent.pop(name, None)  # the newest last, so the oldest yes is forgotten first
        state.consent[name] = said
    state.consent = bound_consent(state.consent)


def bound_consent(consent: dict[str, bool]) -> dict[str, bool]:
    """At most ``MAX_KINDS`` channels' consent. The oldest yeses are forgotten first (the
    channel then answers as every channel does, or asks again where a yes is required); should
    the noes alone be too many, they become one no to every channel beside the latest yeses,
    since forgetting a no would contact someone who said no."""
    if len(consent) <= MAX_KINDS:
        return consent
    noes = sum(1 for said in consent.values() if not said)
    if noes < MAX_KINDS:
        yeses = [name for name, said in consent.items() if said]
        kept = set(yeses[noes - MAX_KINDS :])  # the newest, as many as there is room for
        return {name: said for name, said in consent.items() if not said or name in kept}
    latest = [name for name, said in consent.items() if said and name != ALL_CHANNELS][1 - MAX_KINDS :]
    return {ALL_CHANNELS: False} | dict.fromkeys(latest, True)  # the no first: the yeses came after it


def consent_word(consent: dict[str, bool], channel: str) -> bool | None:
    """The customer's latest word on ``channel``: what they said of it, else what they said of
    every channel, else None. A yes to the channel beside a no to every channel counts only if
    it came after: a word on every channel clears the others, so it is stored first, unless a
    version before that wrote it (which kept the order channels were first named in); when
    the order cannot tell, no."""
    own, every = consent.get(channel), consent.get(ALL_CHANNELS)
    if own is None:
        return every
    if own and every is False:
        names = list(consent)
        return names.index(channel) > names.index(ALL_CHANNELS)
    return own


def _preferences(state: CustomerState, event: Event) -> None:
    """Time zone, preferred channels and quiet hours; a value that is not valid is ignored,
    so one bad field from a channel never wipes a preference the customer gave earlier."""
    props = event.properties
    zone = known_zone(props.get("timezone"))
    if zone is not None:
        state.timezone = zone
    if isinstance(props.get("preferred_channels"), list):
        state.preferred_channels = _channel_list(props["preferred_channels"])
    if "quiet_hours" in props:
        window = quiet_hours_of(props["quiet_hours"])
        if window is not None:
            state.quiet_hours = window


def _channel_list(values: list[Any]) -> list[str]:
    """Valid channel names, most preferred first, without repeats, at most ``MAX_PREFERRED``."""
    found: list[str] = []
    for value in values:
        name = value.strip().lower() if isinstance(value, str) else ""
        if is_channel_name(name) and name not in found:
            found.append(name)
            if len(found) == MAX_PREFERRED:
                break
    return found


def quiet_hours_of(value: Any) -> dict[str, str] | None:
    """``{"start": "21:00", "end": "08:00"}`` normalised to HH:MM; ``{}`` for null (no quiet
    hours any more); None when invalid. A window may wrap midnight; start == end is refused
    because it could mean never or always."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        return None
    start, end = clock_minutes(value.get("start")), clock_minutes(value.get("end"))
    if start is None or end is None or start == end:
        return None
    return {"start": f"{start // 60:02d}:{start % 60:02d}", "end": f"{end // 60:02d}:{end % 60:02d}"}


_HANDLERS = {
    "add_to_cart": _add_to_cart,
    "remove_from_cart": _remove_from_cart,
    "purchase": _purchase,
    "consent": _consent,
    PREFERENCES: _preferences,
}
