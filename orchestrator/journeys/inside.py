"""Who is inside each journey version now, across the whole group of workers.

Each worker keeps an exact tally of the customers at each journey step on the partitions
it processes (``orchestrator_journey_customers``, see :mod:`agents.web`). A gauge is per
worker, though, and a marketer retiring or removing a version wants one number for the
group: how many customers are still on it. So each worker also writes its tallies to one
Redis hash, ``<prefix>journeys-inside``, a field per partition::

    "2" -> {"at": 1790000000.0, "worker": "host:6066", "of": 4,
            "places": [["cart_abandoned", "2", "wait_1h", 17], ...]}

and ``orchestrator journeys list`` adds them up. A partition's field is written only once
its owner has counted it exactly (after a start or a rebalance, the count is taken from
RocksDB first), and it is overwritten by whoever owns the partition now; a field nobody
renews (its worker died and the new owner is still counting) keeps its last figures, and
its age says how old they are. Only numbers are kept: no customer can be found in it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Place = tuple[str, str, str]  # (journey, version, step), as the gauge's labels
STALE_S = 60.0  # a partition's figures this old were not renewed: its worker is gone or still counting


def inside_key(prefix: str) -> str:
    return f"{prefix}journeys-inside"


def entry(places: Mapping[Place, int], wall: float, worker: str, partitions: int) -> str:
    """A partition's field value: its tallies, when they were true, by whom, out of how many."""
    rows = [[jid, version, step, n] for (jid, version, step), n in sorted(places.items()) if n]
    return json.dumps({"at": round(wall, 3), "worker": worker, "of": partitions, "places": rows})


@dataclass
class Inside:
    """The group's figures as the workers last wrote them."""

    steps: dict[tuple[str, int], Counter[str]] = field(default_factory=dict)  # (journey, version) -> step -> n
    counted: dict[int, float] = field(default_factory=dict)  # partition -> when its figures were true
    partitions: int = 0  # how many there are, as the newest entry says

    def customers(self, journey: str, version: int) -> int:
        return sum(self.steps.get((journey, version), Counter()).values())

    def missing(self) -> list[int]:
        """Partitions no worker has written figures for yet: the totals leave them out."""
        return [p for p in range(self.partitions) if p not in self.counted]

    def stale(self, now: float, stale_s: float = STALE_S) -> list[int]:
        return sorted(p for p, at in self.counted.items() if now - at > stale_s)

    def oldest(self) -> float | None:
        return min(self.counted.values(), default=None)


def read(fields: Mapping[Any, Any]) -> Inside:
    """The hash's fields (bytes or str) added up; a field this release cannot read is skipped,
    so a stray one never stops ``list``."""
    inside = Inside()
    newest = -1.0
    for name, value in fields.items():
        try:
            partition, doc = int(name), json.loads(value)
            at, rows, of = float(doc["at"]), list(doc["places"]), int(doc.get("of") or 0)
        except (TypeError, ValueError, KeyError):
            continue
        inside.counted[partition] = at
        if at > newest:
            newest, inside.partitions = at, of
        for row in rows:
            _add(inside, row)
    inside.partitions = max(inside.partitions, max(inside.counted, default=-1) + 1)
    return inside


def _add(inside: Inside, row: Any) -> None:
    """One ``[journey, version, step, n]`` row in; one this release cannot read is left out."""
    try:
        jid, version, step, n = row
        place, count = (str(jid), int(version)), int(n)
    except (TypeError, ValueError):
        return
    inside.steps.setdefault(place, Counter())[str(step)] += count
