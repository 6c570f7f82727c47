"""What conditions and payload templates see: ``event``, ``state``, ``trigger`` and ``now``.

Kept apart from the engine so that ``journeys validate`` can try conditions on sample
customers (see :mod:`probe`) through exactly the views the engine hands to CEL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from orchestrator.core.event import Event
from orchestrator.core.lifecycle import stage
from orchestrator.core.state import CustomerState
from orchestrator.journeys.conditions import Reads, Variables, prune

TRIGGER_PROPERTIES_MAX = 20


class Context(Variables):
    """What conditions and templates see, built once per decision and only when needed."""

    NAMES = ("event", "state", "trigger", "now")

    def __iter__(self) -> Iterator[str]:
        return iter(self.NAMES)

    def __len__(self) -> int:
        return len(self.NAMES)

    def __init__(
        self,
        state: CustomerState,
        event: Event | None,
        now: float,
        trigger: dict[str, Any] | None = None,
    ) -> None:
        self.state, self.event, self.now, self.trigger = state, event, now, trigger
        self._state_fields: dict[str, Any] = {}
        self._event_view: dict[str, Any] | None = None

    def __getitem__(self, name: str) -> Any:
        """Views are built only when an expression asks for them, and once."""
        if name == "state":
            return {field: self._state_field(field) for field in STATE_VIEW}
        if name == "now":
            return self.now
        if self._event_view is None and self.event is not None:
            self._event_view = summary(self.event, most=None)
        event = self._event_view if self.event is not None else self.trigger
        if name == "event":
            return event or {}
        if name == "trigger":  # before entry the event, as entering will keep it
            return self.trigger or summary(self.event)
        raise KeyError(name)

    def select(self, name: str, reads: Reads) -> Any:
        """Only the fields an expression reads are built (``stage`` walks the counts, an
        event's summary copies its properties)."""
        if reads is None:
            return super().select(name, reads)
        if name == "state":
            return {f: prune(self._state_field(f), below) for f, below in reads if f in STATE_VIEW}
        if self.event is not None and (name == "event" or (name == "trigger" and not self.trigger)):
            view = EVENT_VIEW if name == "event" else TRIGGER_VIEW
            return {f: prune(view[f](self.event), below) for f, below in reads if f in view}
        return super().select(name, reads)

    def _state_field(self, field: str) -> Any:
        """One field of the state view, built at first use. The fields do not change while
        a context lives: the engine only moves journeys, which the view does not show."""
        try:
            return self._state_fields[field]
        except KeyError:
            value = self._state_fields[field] = STATE_VIEW[field](self.state, self.now)
            return value


STATE_VIEW: dict[str, Callable[[CustomerState, float], Any]] = {
    "customer_id": lambda s, _now: s.customer_id or s.key,
    "stage": stage,
    "events": lambda s, _now: s.events,
    "purchases": lambda s, _now: s.purchases,
    "revenue": lambda s, _now: s.revenue,
    "first_seen": lambda s, _now: s.first_seen,
    "last_seen": lambda s, _now: s.last_seen,
    "channel_counts": lambda s, _now: s.channel_counts,
    "type_counts": lambda s, _now: s.type_counts,
    "cart": lambda s, _now: s.cart,
    "cart_size": lambda s, _now: len(s.cart),
    "purchased": lambda s, _now: list(s.purchased),
    "consent": lambda s, _now: s.consent,
    "identifiers": lambda s, _now: s.identifiers,
}  # what ``state`` means in a condition, field by field, in this order


def _first_properties(event: Event) -> dict[str, Any]:
    """The properties a summary keeps; the event's own map when it is short enough (the
    caller copies what it keeps)."""
    props = event.properties
    return props if len(props) <= TRIGGER_PROPERTIES_MAX else dict(list(props.items())[:TRIGGER_PROPERTIES_MAX])


EVENT_VIEW: dict[str, Callable[[Event], Any]] = {
    "event_id": lambda e: e.event_id,
    "type": lambda e: e.type,
    "channel": lambda e: e.channel,
    "ts": lambda e: e.ts,
    "properties": lambda e: e.properties,
}  # what ``event`` means in a condition, field by field: the current event, all its properties
TRIGGER_VIEW = EVENT_VIEW | {"properties": _first_properties}  # what :func:`summary` holds


def summary(event: Event | None, most: int | None = TRIGGER_PROPERTIES_MAX) -> dict[str, Any]:
    """An event as conditions see it; kept as an instance's trigger, with its first ``most``
    properties only, so that what the state holds stays bounded."""
    if event is None:
        return {}
    props = dict(list(event.properties.items())[:most])
    return {
        "event_id": event.event_id,
        "type": event.type,
        "channel": event.channel,
        "ts": event.ts,
        "properties": props,
    }
