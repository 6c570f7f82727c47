"""Tell of a dependency's outage in the log when it begins and when it ends (and, if asked,
now and then while it lasts).

A check that runs every few seconds against Kafka or Redis would otherwise warn at every
tick for as long as the outage lasts, and bury the one line that says what is wrong.
"""

from __future__ import annotations

import logging
import time


class Outage:
    """A warning at the first failure, again every ``repeat_s`` while failures go on (never,
    when None), and an info line with the outage's length at the first success after."""

    def __init__(self, what: str, log: logging.Logger, repeat_s: float | None = None) -> None:
        self.what = what  # what fails, as the log line names it: "topic discovery"
        self.log = log
        self.repeat_s = repeat_s
        self.since: float | None = None  # monotonic time of the first failure; None: all well
        self.said_at = 0.0  # monotonic time of the last warning

    def failed(self, why: object) -> None:
        """``why`` is logged as text: a log record that held the exception would keep its
        traceback, and the sockets in its frames, alive for as long as a handler keeps it."""
        now, why = time.monotonic(), str(why)
        if self.since is None:
            self.since = self.said_at = now
            again = "quietly until it works" if self.repeat_s is None else "and saying so now and then"
            self.log.warning("%s fails: %s; trying again %s", self.what, why, again)
        elif self.repeat_s is not None and now - self.said_at >= self.repeat_s:
            self.said_at = now
            self.log.warning("%s still fails after %.0f s: %s", self.what, now - self.since, why)

    def succeeded(self) -> None:
        if self.since is not None:
            self.log.info("%s works again after %.0f s", self.what, time.monotonic() - self.since)
            self.since = None
