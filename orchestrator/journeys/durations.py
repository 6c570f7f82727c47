"""Human durations for journey files: ``90s``, ``15m``, ``1h30m``, ``3d``, ``2w``."""

from __future__ import annotations

import math
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
# Longer than anything a journey means, and short enough that now + it is still a date:
# a million weeks overflowed the calendar (year 21189), a bigger one vanished in the floats.
MAX_SECONDS = 3653 * UNITS["d"]


def parse_duration(text: str | int | float) -> float:
    """Seconds in ``text``; a bare number is seconds. Raises ValueError with the text."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError("a duration is like 30s, 15m, 1h30m, 3d or 2w")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        compact = text.replace(" ", "").lower()
        parts = _PART.findall(compact)
        if not parts or "".join(n + u for n, u in parts) != compact:
            raise ValueError(f"{text!r} is not a duration like 30s, 15m, 1h30m, 3d or 2w")
        seconds = sum(float(n) * UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{text!r} is not a finite, positive duration")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than 10 years")
    return seconds
