"""Every known version of every journey; the newest version of each is the one customers enter.

Customers already inside a journey finish on the version they entered, so old
versions stay here for as long as anyone may still be in them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.journeys.loader import Compiled


@dataclass
class Catalogue:
    versions: dict[str, dict[int, Compiled]] = field(default_factory=dict)
    retired: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, journeys: Iterable[Compiled]) -> Catalogue:
        catalogue = cls()
        for journey in journeys:
            catalogue.add(journey)
        return catalogue

    def add(self, journey: Compiled) -> None:
        self.versions.setdefault(journey.id, {})[journey.version] = journey
        self.retired.discard(journey.id)

    def retire(self, journey_id: str) -> None:
        """No new entries; customers inside finish their version."""
        self.retired.add(journey_id)

    def get(self, journey_id: str, version: int) -> Compiled | None:
        return self.versions.get(journey_id, {}).get(version)

    def active(self) -> list[Compiled]:
        """The newest version of each journey that is open for entry, in id order."""
        return [
            by_version[max(by_version)]
            for jid, by_version in sorted(self.versions.items())
            if by_version and jid not in self.retired
        ]

    def __len__(self) -> int:
        return len(self.versions)
