"""Per-customer state: one view of the customer across all channels.

Stored as msgpack in a changelog-backed RocksDB table and projected to Redis.
Every list and map here is bounded, so a customer who never stops clicking
cannot grow a record without limit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import msgpack

MAX_SUBJECTS = 50  # products/queries remembered per map (interests, purchased, removed_from_cart, remarketed, cart)
MAX_KINDS = 64  # channels, event types and consent switches kept per customer
MAX_IDENTIFIER_KINDS = 32  # kinds of identifier (email, phone, cookie, ...) kept per customer


@dataclass(slots=True)
class CustomerState:
    key: str
    customer_id: str | None = None
    identifiers: dict[str, str] = field(default_factory=dict)
    first_seen: float = 0.0
    last_seen: float = 0.0
    events: int = 0
    channel_counts: dict[str, int] = field(default_factory=dict)
    type_counts: dict[str, int] = field(default_factory=dict)
    last_touch: dict[str, float] = field(default_factory=dict)
    recent: list[dict[str, Any]] = field(default_factory=list)
    seen_ids: list[str] = field(default_factory=list)
    cart: dict[str, dict[str, Any]] = field(default_factory=dict)
    # product -> when its cart line was last added (kept apart from the line, whose fields a
    # template may render): a removal dated before it leaves the line in, and a merge drops a
    # line the other profile took out or bought after it. Lines stored before have none.
    cart_added: dict[str, float] = field(default_factory=dict)
    purchases: int = 0
    revenue: float = 0.0
    currency: str | None = None
    purchased: dict[str, float] = field(default_factory=dict)
    # product -> when it was last taken out of the cart: an add_to_cart dated before that, read
    # late, must not put it back; kept per product (not read from recent), so no removal is missed
    removed_from_cart: dict[str, float] = field(default_factory=dict)
    interests: dict[str, dict[str, Any]] = field(default_factory=dict)
    remarketed: dict[str, float] = field(default_factory=dict)
    consent: dict[str, bool] = field(default_factory=dict)
    do_not_contact: bool = False  # global: while true nothing goes out on any channel
    contacts: dict[str, list[float]] = field(default_factory=dict)
    timezone: str | None = None
    preferred_channels: list[str] = field(default_factory=list)  # most preferred first, at most 10
    quiet_hours: dict[str, str] = field(default_factory=dict)  # {"start": "21:00", "end": "08:00"}, local time
    journeys: dict[str, dict[str, Any]] = field(default_factory=dict)
    journey_log: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: float = 0.0  # set once; with the key's kind it decides which profile survives a merge
    aliases: list[str] = field(default_factory=list)  # other keys that point here (merged or linked)

    def thaw(self) -> CustomerState:
        """A copy whose containers may be changed without touching ``self``.

        Shallow per container: nested values are replaced, never mutated, by the
        code that folds events in, except journey instances, journey log entries
        and contact lists, which are copied one level deeper. Spelled out field by
        field because it runs once per decision: a loop over ``fields()`` costs
        twice as much. A unit test checks that no field is left out or misplaced.
        """
        return CustomerState(  # positional, in field order: keywords cost 25 % more here
            self.key,
            self.customer_id,
            self.identifiers.copy(),
            self.first_seen,
            self.last_seen,
            self.events,
            self.channel_counts.copy(),
            self.type_counts.copy(),
            self.last_touch.copy(),
            self.recent.copy(),
            self.seen_ids.copy(),
            self.cart.copy(),
            self.cart_added.copy(),
            self.purchases,
            self.revenue,
            self.currency,
            self.purchased.copy(),
            self.removed_from_cart.copy(),
            self.interests.copy(),
            self.remarketed.copy(),
            self.consent.copy(),
            self.do_not_contact,
            {ch: list(times) for ch, times in self.contacts.items()},
            self.timezone,
            self.preferred_channels.copy(),
            self.quiet_hours.copy(),
            {jid: dict(inst) for jid, inst in self.journeys.items()},
            {jid: dict(log) for jid, log in self.journey_log.items()},
            self.created_at,
            self.aliases.copy(),
        )

    def next_wake(self) -> float | None:
        """When this customer next needs a timer: the earliest wait of any journey."""
        earliest = None
        for inst in self.journeys.values():  # a plain loop: asked several times per event
            wake = inst.get("wake")
            if wake is not None and (earliest is None or wake < earliest):
                earliest = wake
        return earliest

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_bytes(self) -> bytes:
        return msgpack.packb(self.to_map(), use_bin_type=True)

    def to_map(self) -> dict[str, Any]:
        """The fields as stored: plain values, containers shared with ``self``, not copied."""
        return {f: getattr(self, f) for f in _FIELDS} | {"key": self.key}

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerState:
        return cls.from_map(msgpack.unpackb(data, raw=False))

    @classmethod
    def from_map(cls, raw: dict[str, Any]) -> CustomerState:
        """From stored fields; a field this version does not know (a newer writer's) is ignored."""
        state = cls(**{k: v for k, v in raw.items() if k in _ALL_FIELDS})
        if "removed_from_cart" not in raw:  # stored before removals were kept per product
            state.removed_from_cart = removals_in(state.recent)
        return state


def removals_in(recent: list[dict[str, Any]]) -> dict[str, float]:
    """Per product, the latest ``remove_from_cart`` among the recent events: what a profile
    stored before ``removed_from_cart`` was kept knew of removals (the version before read them
    there), so a late add after one still stays out once the worker is upgraded."""
    found: dict[str, float] = {}
    for seen in recent:
        subject = seen.get("subject")
        if seen.get("type") == "remove_from_cart" and isinstance(subject, str) and subject.startswith("product:"):
            pid = subject.removeprefix("product:")
            found[pid] = max(float(seen.get("ts") or 0.0), found.get(pid, 0.0))
    return dict(sorted(found.items(), key=lambda kv: kv[1]))


_ALL_FIELDS = frozenset(f.name for f in fields(CustomerState))
_FIELDS = tuple(f.name for f in fields(CustomerState) if f.name != "key")


def remember(mapping: dict[str, Any], key: str, value: Any, most: int = MAX_SUBJECTS) -> None:
    """Insert or refresh ``key`` as the newest entry, dropping the oldest beyond ``most``."""
    mapping.pop(key, None)
    mapping[key] = value
    while len(mapping) > most:
        del mapping[next(iter(mapping))]


def trim_least(counts: dict[str, int], keep: frozenset[str] = frozenset(), most: int = MAX_KINDS) -> list[str]:
    """Drop the least counted keys, never one in ``keep``, until at most ``most`` are left;
    the keys dropped. Channel names and event types are open sets (any lower_snake_case name),
    so a channel sending a new one with every event would otherwise grow a record until Kafka
    refused to store it, and the worker with it."""
    dropped: list[str] = []
    while len(counts) > most:
        least = min((k for k in counts if k not in keep), key=counts.__getitem__, default=None)
        if least is None:
            break
        del counts[least]
        dropped.append(least)
    return dropped


def append_bounded(items: list[Any], item: Any, most: int) -> None:
    items.append(item)
    if len(items) > most:
        del items[: len(items) - most]
