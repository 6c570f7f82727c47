"""Every known version of every journey; the newest version of each is the one customers enter.

Customers already inside a journey finish on the version they entered, so old
versions stay here for as long as anyone may still be in them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.journeys.loader import Compiled

MAX_CACHED_TYPES = 1024


@dataclass
class Catalogue:
    """Change it through :meth:`add` and :meth:`retire`: they drop the cached lists of
    active journeys, which every event would otherwise rebuild."""

    versions: dict[str, dict[int, Compiled]] = field(default_factory=dict)
    retired: set[str] = field(default_factory=set)
    _active: list[Compiled] | None = field(default=None, init=False, repr=False, compare=False)
    _triggered: dict[str, tuple[Compiled, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, journeys: Iterable[Compiled]) -> Catalogue:
        catalogue = cls()
        for journey in journeys:
            catalogue.add(journey)
        return catalogue

    def add(self, journey: Compiled) -> None:
        self.versions.setdefault(journey.id, {})[journey.version] = journey
        self.retired.discard(journey.id)
        self._changed()

    def retire(self, journey_id: str) -> None:
        """No new entries; customers inside finish their version."""
        self.retired.add(journey_id)
        self._changed()

    def get(self, journey_id: str, version: int) -> Compiled | None:
        return self.versions.get(journey_id, {}).get(version)

    def active(self) -> list[Compiled]:
        """The newest version of each journey that is open for entry, in id order."""
        if self._active is None:
            self._active = [
                by_version[max(by_version)]
                for jid, by_version in sorted(self.versions.items())
                if by_version and jid not in self.retired
            ]
        return list(self._active)

    def triggered_by(self, event_type: str) -> tuple[Compiled, ...]:
        """The active journeys whose trigger takes ``event_type``, in id order: the only ones
        an event of that type can enter, so the others need not even be looked at."""
        found = self._triggered.get(event_type)
        if found is None:
            found = tuple(j for j in self.active() if event_type in j.definition.trigger.event)
            if len(self._triggered) >= MAX_CACHED_TYPES:  # channels may invent any number of types
                self._triggered = {}
            self._triggered[event_type] = found
        return found

    def _changed(self) -> None:
        self._active = None
        self._triggered = {}

    def __len__(self) -> int:
        return len(self.versions)
