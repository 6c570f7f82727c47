"""Every known version of every journey; the newest version of each is the one customers enter.

Customers already inside a journey finish on the version they entered, so old
versions stay here for as long as anyone may still be in them, unless a newer
version's ``migrate`` rule moves them: :meth:`Catalogue.migration` says where to.

The published catalogue is the compacted ``orchestrator.journeys`` topic, read as the
key-value state it stands for (:meth:`Catalogue.apply`): ``id:version`` holds a version's
YAML, ``id:retired`` marks a retired journey. Its meaning never depends on the order of the
records, so compaction, which keeps only the last record of each key, never changes it.

A published version this worker cannot load (published by a newer release with a feature this
one lacks, or refused by a limit a newer release added) is *unloadable*, not gone: customers
already in it are kept as they are, not sent out of the journey, and nobody new enters the
journey in an older version instead. Its tombstone, or a worker that can load it, ends that.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.journeys.loader import Compiled, InvalidJourney, check_migrations, compile_text
from orchestrator.journeys.model import Migration

log = logging.getLogger(__name__)
MAX_CACHED_TYPES = 1024
MAX_LOGGED = 1024
RETIRED = "retired"  # ``<id>:retired``: the key of a journey's retirement marker


def record_key(journey_id: str, version: int | None = None) -> str:
    """A catalogue topic key: ``id:version`` for a version, ``id:retired`` for the marker."""
    return f"{journey_id}:{RETIRED if version is None else version}"


def parse_key(key: str) -> tuple[str, int | None] | None:
    """``(id, version)`` of a catalogue topic key, version None for a retirement marker;
    None for a key of any other shape."""
    journey_id, _, rest = key.rpartition(":")
    if not journey_id:
        return None
    if rest == RETIRED:
        return journey_id, None
    if rest.isascii() and rest.isdigit():
        return journey_id, int(rest)
    return None


class BadRecord(ValueError):
    """A catalogue topic record that means nothing: a key of no known shape, or a version
    whose YAML is another journey or version than its key says."""


@dataclass(frozen=True)
class Move:
    """Where a customer in flight goes: ``journey`` (the newer version) at ``step``, or out
    of the journey (reason ``migration``) when ``step`` is None."""

    journey: Compiled
    step: str | None


@dataclass
class Catalogue:
    """Change it through :meth:`add`, :meth:`remove`, :meth:`retire` and :meth:`reopen` (or
    :meth:`apply`, one topic record): they drop the cached lists of active journeys, which
    every event would otherwise rebuild.

    A retired journey keeps its versions, so the customers inside finish the one they are on,
    but has no :meth:`active` version: nobody new enters. So has a journey whose newest
    published version is :attr:`unloadable`."""

    versions: dict[str, dict[int, Compiled]] = field(default_factory=dict)
    retired: set[str] = field(default_factory=set)
    unloadable: dict[str, dict[int, str]] = field(default_factory=dict)  # id -> version -> why it did not compile
    _active: list[Compiled] | None = field(default=None, init=False, repr=False, compare=False)
    _triggered: dict[str, tuple[Compiled, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _sources: dict[tuple[str, int], tuple[tuple[Compiled, Migration], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _migrating: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)
    _goal_types: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)
    _logged: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, journeys: Iterable[Compiled]) -> Catalogue:
        catalogue = cls()
        for journey in journeys:
            catalogue.add(journey)
        return catalogue

    def add(self, journey: Compiled, *, reopen: bool = True) -> None:
        """Know ``journey``; it reopens its journey if retired, unless ``reopen`` is False (the
        topic's records: there only removing the marker reopens, see :meth:`apply`)."""
        self.versions.setdefault(journey.id, {})[journey.version] = journey
        _drop(self.unloadable, journey.id, journey.version)
        if reopen:
            self.retired.discard(journey.id)
        self._changed()
        self._check(journey.id)

    def remove(self, journey_id: str, version: int) -> bool:
        """Forget a version; True if it was known. Customers still on it leave the journey the
        next time the engine looks at them (reason ``version_removed``), unless a newer
        version's migration rule moves them; newcomers enter the newest version left."""
        known = _drop(self.versions, journey_id, version) | _drop(self.unloadable, journey_id, version)
        if known:
            self._changed()
        return known

    def retire(self, journey_id: str) -> None:
        """No new entries; customers inside finish their version."""
        self.retired.add(journey_id)
        self._changed()

    def reopen(self, journey_id: str) -> None:
        """A retired journey takes newcomers again, into its newest version."""
        self.retired.discard(journey_id)
        self._changed()

    def apply(self, key: str, text: str | None) -> str:
        """One record of the catalogue topic (``text`` None for a tombstone), applied as the
        state its key now has; returns what changed, in words.

        ``id:version`` with YAML adds that version (without reopening a retired journey); its
        tombstone removes it. ``id:retired`` with any value retires the journey; its tombstone
        reopens it. Raises :class:`BadRecord` for a key of another shape or a version whose YAML
        says another id or version, ``InvalidJourney`` for YAML that does not compile."""
        parsed = parse_key(key)
        if parsed is None:
            raise BadRecord(f"a key is id:version or id:{RETIRED}, not {key!r}")
        journey_id, version = parsed
        if version is None:
            if text is None:
                self.reopen(journey_id)
                return f"journey {journey_id} reopened"
            self.retire(journey_id)
            return f"journey {journey_id} retired"
        if text is None:
            known = self.remove(journey_id, version)
            return f"journey {journey_id} version {version} removed" + ("" if known else " (was not known)")
        try:
            journey = compile_text(text, f"published {key}")
        except InvalidJourney as exc:
            self._unloadable(journey_id, version, exc)
            raise
        if (journey.id, journey.version) != parsed:
            raise BadRecord(f"the journey under {key} is {record_key(journey.id, journey.version)}")
        self.add(journey, reopen=False)
        return f"journey {journey_id} version {version} is live" + (" (retired)" if journey_id in self.retired else "")

    def get(self, journey_id: str, version: int) -> Compiled | None:
        return self.versions.get(journey_id, {}).get(version)

    def held(self, journey_id: str, version: int) -> bool:
        """Whether customers on this version wait for it rather than leave: it is published
        but this worker cannot load it (see the module's docstring)."""
        return bool(self.unloadable) and version in self.unloadable.get(journey_id, ())

    def _unloadable(self, journey_id: str, version: int, exc: InvalidJourney) -> None:
        self.unloadable.setdefault(journey_id, {})[version] = str(exc).splitlines()[0]
        _drop(self.versions, journey_id, version)  # the key's last record is what counts, as everywhere here
        self._changed()

    def active(self) -> list[Compiled]:
        """The newest version of each journey that is open for entry, in id order."""
        if self._active is None:
            newest = {
                jid: by_version[max(by_version)] for jid, by_version in sorted(self.versions.items()) if by_version
            }
            self._active = [journey for jid, journey in newest.items() if self._open(jid, journey.version)]
        return list(self._active)

    def _open(self, journey_id: str, newest: int) -> bool:
        """Not retired, and no newer version published that this worker cannot load."""
        return journey_id not in self.retired and newest > max(self.unloadable.get(journey_id, ()), default=0)

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

    @property
    def goal_types(self) -> frozenset[str]:
        """Event types that are a goal of some version with a ``conversion_window``: only
        these can convert a customer after they left, so other events need not look."""
        if self._goal_types is None:
            self._goal_types = frozenset(
                event_type
                for versions in self.versions.values()
                for journey in versions.values()
                if journey.definition.conversion_window and journey.definition.goal
                for event_type in journey.definition.goal.event
            )
        return self._goal_types

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
        self._goal_types = None

    def __len__(self) -> int:
        return len(self.versions)


def _drop(by_id: dict[str, dict[int, Any]], journey_id: str, version: int) -> bool:
    """Remove ``version`` of ``journey_id`` (and the id when it has none left); True if it was there."""
    by_version = by_id.get(journey_id, {})
    if version not in by_version:
        return False
    del by_version[version]
    if not by_version:
        del by_id[journey_id]
    return True
