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
    """The next moment after ``now`` when the clock in ``timezone`` shows ``hhmm``.

    On the night the clocks go back, a time in the repeated hour comes twice: asked between
    the two, it is the second (not tomorrow's). On the night they go forward, a time in the
    skipped hour is the moment the clocks jump (02:30 on a night that skips 02:00-03:00 is
    03:00): the first moment the clock has passed it, as cron runs what it skips."""
    where = zone(timezone)
    hour, minute = (int(p) for p in hhmm.split(":"))
    local = datetime.fromtimestamp(now, where)
    today = [moment for moment in _moments(local, hour, minute) if moment > now]
    return today[0] if today else _moments(local + timedelta(days=1), hour, minute)[0]


def _moments(day: datetime, hour: int, minute: int) -> list[float]:
    """When the clock shows ``hour:minute`` on ``day``: once, or twice in the hour repeated
    when clocks go back."""
    first = day.replace(hour=hour, minute=minute, second=0, microsecond=0, fold=0)
    second = first.replace(fold=1)
    offsets = first.utcoffset(), second.utcoffset()
    if offsets[0] is not None and offsets[1] is not None and offsets[1] > offsets[0]:  # a time the clocks skip
        return [_jump(second.timestamp(), first.timestamp(), day)]
    repeated = offsets[1] != offsets[0] and second.timestamp() > first.timestamp()
    return [first.timestamp(), second.timestamp()] if repeated else [first.timestamp()]


def _jump(before: float, after: float, day: datetime) -> float:
    """The moment the clocks jump forward, between ``before`` (the skipped time read with the
    new offset, earlier) and ``after`` (read with the old one); zoneinfo keeps its
    transitions private, so it is found by halving, to the second, in at most 14 steps."""
    low, high = int(before), int(after)
    new_offset = datetime.fromtimestamp(high, day.tzinfo).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, day.tzinfo).utcoffset() == new_offset:
            high = middle
        else:
            low = middle
    return float(high)
