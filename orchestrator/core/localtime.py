"""The customer's own clock: time zones by name, and the next time their clock shows HH:MM.

Shared by the contact policy (quiet hours) and the journey engine (``wait: until``,
actions delayed to the end of quiet hours), so both read a customer's clock alike.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@functools.cache
def zone(name: str) -> ZoneInfo:
    """A time zone by name; an unknown name means UTC rather than a failed decision."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def next_local_time(now: float, hhmm: str, timezone: str) -> float:
    """The next moment after ``now`` when the clock in ``timezone`` shows ``hhmm``."""
    where = zone(timezone)
    hour, minute = (int(p) for p in hhmm.split(":"))
    local = datetime.fromtimestamp(now, where)
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate.timestamp() <= now:
        candidate = (local + timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate.timestamp()
