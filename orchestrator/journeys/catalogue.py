"""Every known version of every journey; the newest version of each is the one customers enter.

Customers already inside a journey finish on the version they entered, so old
versions stay here for as long as anyone may still be in them, unless a newer
version's ``migrate`` rule moves them: :meth:`Catalogue.migration` says where to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.journeys.loader import Compiled, check_migrations
from orchestrator.journeys.model import Migration

log = logging.getLogger(__name__)
MAX_CACHED_TYPES = 1024
MAX_LOGGED = 1024


@dataclass(frozen=True)
class Move:
    """Where a customer in flight goes: ``journey`` (the newer version) at ``step``, or out
    of the journey (reason ``migration``) when ``step`` is None."""

    journey: Compiled
    step: str | None


@dataclass
class Catalogue:
    """Change it through :meth:`add` and :meth:`retire`: they drop the cached lists of
    active journeys, which every event would otherwise rebuild."""

    versions: dict[str, dict[int, Compiled]] = field(default_factory=dict)
    retired: set[str] = field(default_factory=set)
    _active: list[Compiled] | None = field(default=None, init=False, repr=False, compare=False)
    _triggered: dict[str, tuple[Compiled, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _sources: dict[tuple[str, int], tuple[tuple[Compiled, Migration], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _migrating: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)
    _logged: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

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
        self._check(journey.id)

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

    # -- migrations ----------------------------------------------------------------------------
    @property
    def migrating(self) -> frozenset[str]:
        """Ids of the journeys with a version that has a migration rule: only customers in
        these need to be looked at for a move, so for every other journey it costs nothing."""
        if self._migrating is None:
            self._migrating = frozenset(
                jid for jid, versions in self.versions.items() if any(j.definition.migrate for j in versions.values())
            )
        return self._migrating

    def migration(self, journey_id: str, version: int, step: str) -> Move | None:
        """Where a customer on ``version`` resting at ``step`` goes, if anywhere.

        The newest version whose rule takes ``version`` decides: it maps the step, or ends the
        journey (``otherwise: exit``); if it leaves the step alone (``otherwise: stay``), the next
        newest is asked, so a rule only ever speaks for its own version. A step a rule names
        but no version has is simply never met."""
        for target, rule in self.migrations_from(journey_id, version):
            new_step = rule.steps.get(step)
            if new_step is not None:
                return Move(target, new_step)
            if rule.otherwise == "exit":
                return Move(target, None)
        return None

    def migrations_from(self, journey_id: str, version: int) -> tuple[tuple[Compiled, Migration], ...]:
        """The newer versions whose rules take customers on ``version``, newest first."""
        key = (journey_id, version)
        found = self._sources.get(key)
        if found is None:
            by_version = self.versions.get(journey_id, {})
            pairs = [(j, j.definition.migration_from(version)) for _, j in sorted(by_version.items(), reverse=True)]
            found = tuple((j, rule) for j, rule in pairs if rule is not None)
            if len(self._sources) >= MAX_CACHED_TYPES:  # customers may carry versions long gone
                self._sources = {}
            self._sources[key] = found
        return found

    def _check(self, journey_id: str) -> None:
        """Migration rules against the versions known now; each problem is logged once. A rule
        naming an old step no version has does no harm at run time: it is never met."""
        by_version = self.versions.get(journey_id, {})
        if not any(j.definition.migrate for j in by_version.values()):
            return
        errors, _ = check_migrations(by_version.values(), by_version.values())
        for error in errors:
            text = str(error)
            if text not in self._logged and len(self._logged) < MAX_LOGGED:
                self._logged.add(text)
                log.warning("journey migration rule ignored in part: %s", text)

    def _changed(self) -> None:
        self._active = None
        self._triggered = {}
        self._sources = {}
        self._migrating = None

    def __len__(self) -> int:
        return len(self.versions)
