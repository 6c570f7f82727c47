"""Merge two profiles of the same person into one, by documented rules.

The winner keeps its key. Counts add up, histories interleave by time, sets
unite. Where the two disagree the safer answer wins: an opt-out beats an
opt-in, do-not-contact on either side holds, contacts from both count towards
fatigue. Nothing is counted twice: the loser's events were folded into the
loser only, and event ids from both are remembered so a redelivered event is
still recognised as a duplicate.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from orchestrator.core.fold import ALL_CHANNELS, bound_consent, consent_word, keep_counts_bounded
from orchestrator.core.state import MAX_IDENTIFIER_KINDS, MAX_SUBJECTS, CustomerState
from orchestrator.identity.tokens import KIND_RANK, kind_of

MAX_ALIASES = 100
HANDLED = frozenset(
    {
        "key", "customer_id", "identifiers", "first_seen", "last_seen", "events", "channel_counts",
        "type_counts", "last_touch", "recent", "seen_ids", "cart", "cart_added", "purchases", "revenue", "currency",
        "purchased", "removed_from_cart", "interests", "remarketed", "consent", "contacts", "journeys",
        "journey_log", "created_at", "aliases",
    }
)  # fmt: skip


def survivor_order(key: str, created_at: float) -> tuple[int, float, str]:
    """Lower survives: the most stable kind of key, then the older profile, then the key itself.

    Static for a profile's life, so both sides of a merge agree on the winner
    without talking to each other.
    """
    kind = kind_of(key) if ":" in key else "customer_id"
    return (KIND_RANK.get(kind, len(KIND_RANK)), created_at, key)


def merge_states(winner: CustomerState, loser: CustomerState, *, recent_most: int, dedupe_most: int) -> CustomerState:
    """A new state under the winner's key holding both histories."""
    w, lo = winner, loser
    merged = w.thaw()
    merged.customer_id = w.customer_id or lo.customer_id
    merged.identifiers = _bounded({**lo.identifiers, **w.identifiers}, MAX_IDENTIFIER_KINDS)
    merged.first_seen = _earliest(w.first_seen, lo.first_seen)
    merged.last_seen = max(w.last_seen, lo.last_seen)
    merged.events = w.events + lo.events
    merged.channel_counts = _add(w.channel_counts, lo.channel_counts)
    merged.type_counts = _add(w.type_counts, lo.type_counts)
    merged.last_touch = _latest(w.last_touch, lo.last_touch)
    merged.recent = sorted(lo.recent + w.recent, key=lambda r: r.get("ts", 0.0))[-recent_most:]
    merged.seen_ids = _unique(lo.seen_ids + w.seen_ids)[-dedupe_most:]
    merged.cart = _bounded({**lo.cart, **w.cart})
    merged.cart_added = _latest(w.cart_added, lo.cart_added)
    merged.purchases = w.purchases + lo.purchases
    merged.revenue = round(w.revenue + lo.revenue, 2)
    merged.currency = w.currency or lo.currency
    merged.purchased = _bounded(_latest(w.purchased, lo.purchased))
    merged.removed_from_cart = _bounded(_latest(w.removed_from_cart, lo.removed_from_cart))
    _drop_lines_gone(merged)
    merged.interests = _bounded({s: v for s, v in {**lo.interests, **w.interests}.items() if not _bought(s, merged)})
    merged.remarketed = _bounded(_latest(w.remarketed, lo.remarketed))
    merged.consent = merge_consent(w.consent, lo.consent)
    merged.contacts = _merge_contacts(w.contacts, lo.contacts)
    merged.journeys = {**lo.journeys, **w.journeys}
    merged.journey_log = _merge_logs(w.journey_log, lo.journey_log)
    merged.created_at = _earliest(w.created_at, lo.created_at)
    merged.aliases = _unique([*w.aliases, lo.key, *lo.aliases])[-MAX_ALIASES:]
    keep_counts_bounded(merged)
    _merge_rest(merged, w, lo)
    return merged


def merge_consent(a: dict[str, bool], b: dict[str, bool]) -> dict[str, bool]:
    """Per channel, each side's answer for it (its own word, else its word on every channel):
    a no on either side is a no; otherwise a yes on either side is a yes."""
    merged: dict[str, bool] = {}
    for channel in [ALL_CHANNELS, *sorted({*a, *b} - {ALL_CHANNELS})]:  # every channel first, as fold keeps it
        if channel == ALL_CHANNELS:
            said = {a.get(channel), b.get(channel)}
        else:
            said = {consent_word(a, channel), consent_word(b, channel)}
        if False in said or True in said:
            merged[channel] = False not in said
    return bound_consent(merged)


def _merge_rest(merged: CustomerState, w: CustomerState, lo: CustomerState) -> None:
    """Fields added after this module was written: a flag set on either side stays set
    (do-not-contact must survive a merge); anything else is the winner's unless empty."""
    for f in fields(CustomerState):
        if f.name in HANDLED:
            continue
        mine, theirs = getattr(w, f.name), getattr(lo, f.name)
        if isinstance(mine, bool):
            setattr(merged, f.name, mine or theirs)
        elif not mine and theirs:
            setattr(merged, f.name, theirs)


def _earliest(a: float, b: float) -> float:
    """The earlier of two times, where 0 means "not known"."""
    return min(a, b) if a and b else a or b


def _merge_contacts(a: dict[str, list[float]], b: dict[str, list[float]]) -> dict[str, list[float]]:
    """Contacts from both profiles count towards fatigue."""
    return {ch: sorted([*a.get(ch, []), *b.get(ch, [])]) for ch in {*a, *b}}


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}


def _latest(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    merged = {k: max(a.get(k, 0.0), b.get(k, 0.0)) for k in {*a, *b}}
    return dict(sorted(merged.items(), key=lambda kv: kv[1]))


def _bounded(mapping: dict[str, Any], most: int = MAX_SUBJECTS) -> dict[str, Any]:
    """The ``most`` newest entries (the last inserted)."""
    return dict(list(mapping.items())[-most:])


def _drop_lines_gone(merged: CustomerState) -> None:
    """Cart lines either profile bought or took out after the line was added (the other
    profile's doing): gone, as one profile would have it. A line stored without the time it
    was added stays."""
    for pid in list(merged.cart):
        added = merged.cart_added.get(pid)
        if added is not None and max(merged.purchased.get(pid, 0.0), merged.removed_from_cart.get(pid, 0.0)) > added:
            del merged.cart[pid]
    merged.cart_added = {pid: at for pid, at in merged.cart_added.items() if pid in merged.cart}


def _bought(subject: str, state: CustomerState) -> bool:
    return subject.startswith("product:") and subject.removeprefix("product:") in state.purchased


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_logs(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Entries and conversions add up; other facts (last entry time) take the later."""
    merged: dict[str, dict[str, Any]] = {}
    for jid in {*a, *b}:
        left, right = a.get(jid, {}), b.get(jid, {})
        doc = {**right, **left}
        for name in ("entries", "conversions"):
            doc[name] = int(left.get(name, 0)) + int(right.get(name, 0))
        for name, value in right.items():
            if name not in ("entries", "conversions") and isinstance(value, (int, float)):
                doc[name] = max(value, left.get(name, value))
        merged[jid] = doc
    return merged
