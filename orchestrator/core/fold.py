"""Fold one event into a customer's state: counts, cart, purchases, consent, preferences, interests."""

from __future__ import annotations

import functools
import math
import re
import zoneinfo
from typing import Any

from orchestrator.core.event import Event
from orchestrator.core.state import CustomerState, append_bounded, remember
from schemas.events import CHANNEL_PATTERN

INTEREST_TYPES = frozenset({"search", "product_view", "add_to_cart"})
ALL_CHANNELS = "*"
PREFERENCES = "preferences"  # the event type that sets time zone, quiet hours and preferred channels
MAX_PREFERRED = 10  # preferred channels kept
_CHANNEL = re.compile(CHANNEL_PATTERN)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


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
        state.identifiers = {**state.identifiers, **event.identifiers}
    state.channel_counts[event.channel] = state.channel_counts.get(event.channel, 0) + 1
    state.type_counts[event.type] = state.type_counts.get(event.type, 0) + 1
    state.last_touch[event.channel] = max(state.last_touch.get(event.channel, 0.0), event.ts)
    summary = {"event_id": event.event_id, "type": event.type, "channel": event.channel, "ts": event.ts}
    if subject:
        summary["subject"] = subject
    append_bounded(state.recent, summary, recent_most)
    append_bounded(state.seen_ids, event.event_id, dedupe_most)


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
        qty = max(1, min(MAX_QTY, int(_number(event.properties.get("qty"), 1))))
        line = {"qty": qty, "price": _number(event.properties.get("price"))}
        remember(state.cart, pid, line)


def _remove_from_cart(state: CustomerState, event: Event) -> None:
    for pid in purchased_products(event):
        state.cart.pop(pid, None)


def _purchase(state: CustomerState, event: Event) -> None:
    products = purchased_products(event)
    state.purchases += 1
    state.revenue = round(state.revenue + min(_number(event.properties.get("value")), MAX_ORDER_VALUE), 2)
    if isinstance(event.properties.get("currency"), str):
        state.currency = event.properties["currency"]
    for pid in products:
        remember(state.purchased, pid, event.ts)
        state.cart.pop(pid, None)
        state.interests.pop(f"product:{pid}", None)
    if not products:
        state.cart = {}
    # A purchase answers the searches that led to it: stop chasing those queries.
    state.interests = {s: v for s, v in state.interests.items() if not s.startswith("query:")}


def _consent(state: CustomerState, event: Event) -> None:
    """Per-channel opt-in/out (``channel`` + ``granted``, or ``channels``), and the global
    ``do_not_contact`` switch, which is kept apart so opting back in to one channel never
    lifts it: only ``do_not_contact: false`` does."""
    props = event.properties
    if isinstance(props.get("do_not_contact"), bool):
        state.do_not_contact = props["do_not_contact"]
    granted = props.get("granted")
    changes: dict[str, bool] = {}
    if isinstance(props.get("channels"), dict):
        changes = {str(ch): bool(ok) for ch, ok in props["channels"].items() if isinstance(ok, bool)}
    elif isinstance(granted, bool):
        changes = {str(props.get("channel") or ALL_CHANNELS): granted}
    state.consent = {**state.consent, **changes}


def _preferences(state: CustomerState, event: Event) -> None:
    """Time zone, preferred channels and quiet hours; a value that is not valid is ignored,
    so one bad field from a channel never wipes a preference the customer gave earlier."""
    props = event.properties
    zone = props.get("timezone")
    if isinstance(zone, str) and zone in _known_zones():
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
        if _CHANNEL.match(name) and name not in found:
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


def clock_minutes(text: Any) -> int | None:
    """Minutes after midnight of an ``H:MM``/``HH:MM`` clock time, or None."""
    match = _CLOCK.fullmatch(text) if isinstance(text, str) else None
    return None if match is None else int(match[1]) * 60 + int(match[2])


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


_HANDLERS = {
    "add_to_cart": _add_to_cart,
    "remove_from_cart": _remove_from_cart,
    "purchase": _purchase,
    "consent": _consent,
    PREFERENCES: _preferences,
}
