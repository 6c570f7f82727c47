"""A small, believable traffic generator for the demo and for benchmarks.

Each simulated person walks a funnel across channels: sees an ad, searches,
views products, fills a cart, sometimes buys, opens emails, visits a store,
and now and then withdraws consent. At sign-up some set a time zone and quiet
hours. A few records are deliberately broken so the dead-letter path is visible
too. Seeded, so a run can be repeated.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PRODUCTS = {
    "sku-trail-shoe": 129.0,
    "sku-rain-jacket": 179.0,
    "sku-headlamp": 39.0,
    "sku-daypack": 89.0,
    "sku-wool-socks": 19.0,
    "sku-tent-2p": 349.0,
}
QUERIES = ["trail running shoes", "waterproof jacket", "lightweight tent", "hiking socks", "headlamp"]
# Some people set a time zone and quiet hours when they sign up.
PREFERENCES_SHARE = 0.4
PREFERENCES = [
    ("Europe/Berlin", "22:00", "08:00"),
    ("America/New_York", "21:00", "09:00"),
    ("Asia/Tokyo", "23:00", "07:00"),
    ("UTC", "20:00", "08:00"),
]
BROKEN = [b"\x00\x01garbage", b'{"event_id": 7, "type": "search"}', b'{"type": "page_view"}']


@dataclass(frozen=True)
class Outgoing:
    """One record to publish: a channel and either an event document or raw bytes."""

    channel: str
    event: dict[str, Any] | None = None
    raw: bytes | None = None


class Simulator:
    def __init__(self, customers: int = 40, seed: int = 7, broken_every: int = 0, run_id: str | None = None) -> None:
        """``seed`` fixes who does what; ``run_id`` (random by default) names this run's
        people and events, so a second run is new customers rather than redeliveries
        to people who already hit their frequency cap."""
        self._rng = random.Random(seed)
        self._run_id = run_id if run_id is not None else uuid.uuid4().hex[:6]
        self._people = [f"sim-{self._run_id}-{i:04d}" for i in range(customers)]
        self._broken_every = broken_every
        self._count = 0
        self._signed_up: set[str] = set()

    def records(self, now: float) -> Iterator[Outgoing]:
        """One step of one random person's journey (one or a few records)."""
        self._count += 1
        if self._broken_every and self._count % self._broken_every == 0:
            yield Outgoing("web", raw=self._rng.choice(BROKEN))
            return
        person = self._rng.choice(self._people)
        if person not in self._signed_up:  # everyone's first step: a new account (the welcome journey)
            self._signed_up.add(person)
            yield self._event("web", person, now, "signup", via=self._rng.choice(["web", "app", "store"]))
            if self._rng.random() < PREFERENCES_SHARE:  # quiet hours hold emails back, or delay journeys'
                zone, start, end = self._rng.choice(PREFERENCES)
                yield self._event(
                    "web", person, now, "preferences", timezone=zone, quiet_hours={"start": start, "end": end}
                )
            return
        yield from self._step(person, now)

    def _step(self, person: str, now: float) -> Iterator[Outgoing]:
        rng = self._rng
        product = rng.choice(list(PRODUCTS))
        roll = rng.random()
        if roll < 0.20:
            yield self._event("search", person, now, "search", query=rng.choice(QUERIES))
        elif roll < 0.45:
            yield self._event("web", person, now, "product_view", product=product)
        elif roll < 0.57:
            yield self._event("web", person, now, "add_to_cart", product=product, price=PRODUCTS[product], qty=1)
        elif roll < 0.67:
            value = PRODUCTS[product]
            products = [{"id": product, "price": value, "qty": 1}]
            yield self._event(
                rng.choice(["web", "store", "app"]),
                person,
                now,
                "purchase",
                products=products,
                value=value,
                currency="EUR",
            )
        elif roll < 0.77:
            yield self._event("email", person, now, "email_open", campaign="autumn")
        elif roll < 0.85:
            yield self._event("ads", person, now, "ad_click", campaign="remarketing")
        elif roll < 0.92:
            yield self._event("store", person, now, "store_visit", store="berlin-mitte")
        elif roll < 0.97:
            yield self._event("social", person, now, "page_view", page="/community")
        else:
            yield self._event(
                "email", person, now, "consent", channel=rng.choice(["email", "ads"]), granted=rng.random() < 0.3
            )

    def _event(self, source: str, person: str, now: float, kind: str, **properties: Any) -> Outgoing:
        event_id = f"{self._run_id}-{self._count}-{uuid.UUID(int=self._rng.getrandbits(128)).hex[:12]}"
        doc = {"event_id": event_id, "type": kind, "ts": round(now, 3), "customer_id": person, "properties": properties}
        return Outgoing(source, event=doc)
